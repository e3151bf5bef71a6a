"""RocksDB options shared by every database of a metaserver process."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import rocksdict

KIB = 1 << 10
MIB = 1 << 20

COMPRESSION_TYPES = {
    "none": rocksdict.DBCompressionType.none,
    "lz4": rocksdict.DBCompressionType.lz4,
    "zstd": rocksdict.DBCompressionType.zstd,
}
# The window size argument of set_compression_options; RocksDB's default, used by zlib only.
_WINDOW_BITS = -14


@dataclass(frozen=True, slots=True)
class RocksTuning:
    block_cache_bytes: int = 256 * MIB
    # Memtables of all shards together; RocksDB flushes the largest when full.
    write_buffer_total_bytes: int = 256 * MIB
    write_buffer_bytes: int = 16 * MIB
    # 0 leaves the tables without filters.
    bloom_bits_per_key: int = 10
    block_size_bytes: int = 4 * KIB
    # Compression of level 0 and the middle levels, and of the last level. A shard under
    # 256 MiB has only level 0 and the last level. A flushed file often reaches the last
    # level by a trivial move and keeps the compression it was flushed with. So zstd at
    # level 0 too stores a small object in about 88 bytes instead of 133.
    compression: str = "zstd"
    bottommost_compression: str = "zstd"
    zstd_level: int = 3
    # Bytes of the zstd dictionary trained per file of the last level; 0 for none.
    zstd_dictionary_bytes: int = 0
    # Leave filters out of the last level: a point read that reaches it mostly finds its key.
    optimize_filters_for_hits: bool = False

    def validate(self) -> None:
        """Raise ValueError naming the first field outside its bounds."""
        for name in ("compression", "bottommost_compression"):
            value = getattr(self, name)
            if value not in COMPRESSION_TYPES:
                raise ValueError(f"{name} {value!r} is not one of {sorted(COMPRESSION_TYPES)}")
        if not 1 <= self.zstd_level <= 19:
            raise ValueError(f"zstd_level {self.zstd_level} must be between 1 and 19")
        if not 1 * KIB <= self.block_size_bytes <= 1 * MIB:
            raise ValueError(f"block_size_bytes {self.block_size_bytes} must be 1 KiB to 1 MiB")
        if self.write_buffer_bytes > self.write_buffer_total_bytes:
            raise ValueError(
                f"write_buffer_bytes {self.write_buffer_bytes} exceeds write_buffer_total_bytes "
                f"{self.write_buffer_total_bytes}"
            )


class RocksEnv:
    """Holds the block cache and write buffer manager that all shards share."""

    def __init__(self, tuning: RocksTuning | None = None) -> None:
        self.tuning = tuning or RocksTuning()
        self.tuning.validate()
        self.cache = rocksdict.Cache(self.tuning.block_cache_bytes)
        self.write_buffers = rocksdict.WriteBufferManager.new_write_buffer_manager_with_cache(
            self.tuning.write_buffer_total_bytes, False, self.cache
        )

    def options(self) -> rocksdict.Options:
        tuning = self.tuning
        options = rocksdict.Options(raw_mode=True)
        options.create_if_missing(True)
        options.set_block_based_table_factory(self._table_options())
        options.set_write_buffer_manager(self.write_buffers)
        options.set_write_buffer_size(tuning.write_buffer_bytes)
        options.set_max_write_buffer_number(3)
        options.set_level_compaction_dynamic_level_bytes(True)
        options.set_compression_type(COMPRESSION_TYPES[tuning.compression]())
        options.set_bottommost_compression_type(COMPRESSION_TYPES[tuning.bottommost_compression]())
        options.set_compression_options(_WINDOW_BITS, tuning.zstd_level, 0, 0)
        options.set_bottommost_compression_options(
            _WINDOW_BITS, tuning.zstd_level, 0, tuning.zstd_dictionary_bytes, True
        )
        if tuning.zstd_dictionary_bytes:
            options.set_bottommost_zstd_max_train_bytes(100 * tuning.zstd_dictionary_bytes, True)
        options.set_optimize_filters_for_hits(tuning.optimize_filters_for_hits)
        options.set_max_background_jobs(2)
        options.set_keep_log_file_num(3)
        options.set_max_open_files(256)
        options.set_bytes_per_sync(1 * MIB)
        return options

    def _table_options(self) -> rocksdict.BlockBasedOptions:
        table = rocksdict.BlockBasedOptions()
        table.set_block_cache(self.cache)
        table.set_block_size(self.tuning.block_size_bytes)
        if self.tuning.bloom_bits_per_key > 0:
            table.set_bloom_filter(self.tuning.bloom_bits_per_key, False)
        table.set_cache_index_and_filter_blocks(True)
        table.set_pin_l0_filter_and_index_blocks_in_cache(True)
        table.set_format_version(5)
        return table

    def open(self, path: Path) -> rocksdict.Rdict:
        path.mkdir(parents=True, exist_ok=True)
        return rocksdict.Rdict(str(path), self.options())
