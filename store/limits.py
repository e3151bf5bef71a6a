"""Sizes and limits shared by the SDK and the servers."""

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB

# Object layout.
DEFAULT_CHUNK_SIZE_BYTES = 4 * MIB
MIN_CHUNK_SIZE_BYTES = 64 * 1024
MAX_CHUNK_SIZE_BYTES = 64 * MIB
# Objects up to this size are stored inside their metadata record.
DEFAULT_INLINE_MAX_BYTES = 64 * KIB
MAX_INLINE_MAX_BYTES = 1 * MIB
# Dataservers keep one CRC32C per block, so range reads verify what they return.
CHECKSUM_BLOCK_BYTES = 64 * KIB
# Data travels in gRPC messages of this size.
MESSAGE_BYTES = 1 * MIB
# Reads of chunk data up to this size take one unary call (ChunkStream/ReadBlocks)
# served through the dataserver's page cache; larger ones stream with O_DIRECT.
SMALL_READ_BYTES = 512 * KIB
GRPC_MAX_MESSAGE_BYTES = 16 * MIB

# Names, following the S3 rules.
MAX_KEY_BYTES = 1024
MAX_USER_METADATA_BYTES = 2 * KIB
MIN_BUCKET_NAME_CHARS = 3
MAX_BUCKET_NAME_CHARS = 63

# Listing.
MAX_LIST_KEYS = 1000

# Sharding and the cluster map.
DEFAULT_SHARD_COUNT = 16
MAX_SHARD_COUNT = 4096
MAX_REPLICAS = 8

assert MIN_CHUNK_SIZE_BYTES % CHECKSUM_BLOCK_BYTES == 0
assert DEFAULT_CHUNK_SIZE_BYTES % CHECKSUM_BLOCK_BYTES == 0
assert MESSAGE_BYTES % CHECKSUM_BLOCK_BYTES == 0
assert DEFAULT_INLINE_MAX_BYTES < DEFAULT_CHUNK_SIZE_BYTES
