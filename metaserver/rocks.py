"""RocksDB options shared by every database of a metaserver process."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import rocksdict

MIB = 1 << 20


@dataclass(frozen=True, slots=True)
class RocksTuning:
    block_cache_bytes: int = 256 * MIB
    # Memtables of all shards together; RocksDB flushes the largest when full.
    write_buffer_total_bytes: int = 256 * MIB
    write_buffer_bytes: int = 16 * MIB
    bloom_bits_per_key: int = 10


class RocksEnv:
    """Holds the block cache and write buffer manager that all shards share."""

    def __init__(self, tuning: RocksTuning | None = None) -> None:
        self.tuning = tuning or RocksTuning()
        self.cache = rocksdict.Cache(self.tuning.block_cache_bytes)
        self.write_buffers = rocksdict.WriteBufferManager.new_write_buffer_manager_with_cache(
            self.tuning.write_buffer_total_bytes, False, self.cache
        )

    def options(self) -> rocksdict.Options:
        options = rocksdict.Options(raw_mode=True)
        options.create_if_missing(True)
        table = rocksdict.BlockBasedOptions()
        table.set_block_cache(self.cache)
        table.set_bloom_filter(self.tuning.bloom_bits_per_key, False)
        table.set_cache_index_and_filter_blocks(True)
        table.set_pin_l0_filter_and_index_blocks_in_cache(True)
        table.set_format_version(5)
        options.set_block_based_table_factory(table)
        options.set_write_buffer_manager(self.write_buffers)
        options.set_write_buffer_size(self.tuning.write_buffer_bytes)
        options.set_max_write_buffer_number(3)
        options.set_level_compaction_dynamic_level_bytes(True)
        options.set_compression_type(rocksdict.DBCompressionType.lz4())
        options.set_bottommost_compression_type(rocksdict.DBCompressionType.zstd())
        options.set_max_background_jobs(2)
        options.set_keep_log_file_num(3)
        options.set_max_open_files(256)
        options.set_bytes_per_sync(1 * MIB)
        return options

    def open(self, path: Path) -> rocksdict.Rdict:
        path.mkdir(parents=True, exist_ok=True)
        return rocksdict.Rdict(str(path), self.options())
