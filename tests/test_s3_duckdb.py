"""DuckDB's httpfs extension against the gateway: SQL over Parquet and CSV objects.

Analysts point DuckDB at s3:// paths and let it plan the requests: ranged GETs of Parquet
footers and row groups, listings for globs and Hive partitions, and multipart uploads for
COPY ... TO. The extension signs with its own SigV4 code in C++. It comes from PyPI
(duckdb-extension-httpfs), built for the pinned DuckDB release, and is loaded from that
package's file, so the test never downloads anything. Retries are off, so a failed request
fails the test.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import duckdb_extension_httpfs
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from .s3_clients_support import isolate_env
from .s3gw_support import REGION, GatewayInfo

# Rows of the large table: its Parquet file takes three or more parts of 5 MiB.
LARGE_ROWS = 600_000
# The extension sizes its parts as this file-size limit over 10,000 parts, at least 5 MiB, so
# the large table goes up in parts of about 5 MiB.
UPLOAD_LIMIT = "50GB"


def _extension_file() -> Path:
    package = Path(duckdb_extension_httpfs.__file__).parent
    return package / "extensions" / f"v{duckdb.__version__}" / "httpfs.duckdb_extension"


def _quoted(value: str) -> str:
    """Return `value` as an SQL string literal (CREATE SECRET takes no parameters)."""
    return "'" + value.replace("'", "''") + "'"


@pytest.fixture
def db(
    gateway: GatewayInfo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A DuckDB connection with httpfs loaded and a secret for the gateway, path-style."""
    isolate_env(monkeypatch, tmp_path / "duckdb-home")
    host = gateway.endpoint.partition("://")[2]
    connection = duckdb.connect(config={"autoinstall_known_extensions": False})
    connection.execute(f"LOAD '{_extension_file()}'")
    connection.execute("SET http_retries = 0")
    connection.execute(f"SET s3_uploader_max_filesize = '{UPLOAD_LIMIT}'")
    connection.execute(
        f"CREATE SECRET gateway (TYPE s3, KEY_ID {_quoted(gateway.access_key)},"
        f" SECRET {_quoted(gateway.secret_key)}, ENDPOINT {_quoted(host)},"
        f" REGION {_quoted(REGION)}, URL_STYLE 'path', USE_SSL false)"
    )
    yield connection
    connection.close()


def test_parquet_copy_and_query(db: duckdb.DuckDBPyConnection, s3: Any, s3_bucket: str) -> None:
    """COPY TO writes a multipart object, and queries read it back with ranged GETs."""
    url = f"s3://{s3_bucket}/tables/large.parquet"

    db.execute(
        f"COPY (SELECT i AS id, md5(i::VARCHAR) AS digest, i % 97 AS bucket"
        f" FROM range({LARGE_ROWS}) t(i)) TO '{url}' (FORMAT parquet, ROW_GROUP_SIZE 100000)"
    )
    count, distinct, total = db.execute(
        f"SELECT count(*), count(DISTINCT digest), sum(id) FROM '{url}'"
    ).fetchone()  # type: ignore[misc]
    filtered = db.execute(f"SELECT id FROM '{url}' WHERE id BETWEEN 250000 AND 250004").fetchall()
    head = s3.head_object(Bucket=s3_bucket, Key="tables/large.parquet")

    assert (count, distinct, total) == (LARGE_ROWS, LARGE_ROWS, LARGE_ROWS * (LARGE_ROWS - 1) // 2)
    assert [row[0] for row in filtered] == list(range(250000, 250005))
    parts = head["ETag"].strip('"').partition("-")[2]
    assert parts.isdigit(), f"not a multipart upload: {head['ETag']}"
    assert int(parts) >= 3


def test_hive_partitions_and_globs(db: duckdb.DuckDBPyConnection, s3_bucket: str) -> None:
    """PARTITION_BY writes one object per partition, and a glob lists them back."""
    root = f"s3://{s3_bucket}/events"

    db.execute(
        f"COPY (SELECT i AS id, i % 4 AS day FROM range(1000) t(i))"
        f" TO '{root}' (FORMAT parquet, PARTITION_BY (day))"
    )
    files = db.execute(f"SELECT file FROM glob('{root}/**/*.parquet') ORDER BY file").fetchall()
    per_day = db.execute(
        f"SELECT day, count(*) FROM read_parquet('{root}/*/*.parquet', hive_partitioning = true)"
        " GROUP BY day ORDER BY day"
    ).fetchall()
    one_day = db.execute(
        f"SELECT min(id), max(id) FROM read_parquet('{root}/day=3/*.parquet')"
    ).fetchone()

    assert [Path(f[0]).parent.name for f in files] == ["day=0", "day=1", "day=2", "day=3"]
    assert per_day == [(day, 250) for day in range(4)]
    assert one_day == (3, 999)


def test_reads_objects_of_other_clients(
    db: duckdb.DuckDBPyConnection, s3: Any, s3_bucket: str
) -> None:
    """CSV and Parquet put with boto3 read through DuckDB, and a DuckDB CSV through boto3."""
    table = pa.table({"name": ["ada", "grace", "edsger"], "year": [1815, 1906, 1930]})
    parquet = io.BytesIO()
    pq.write_table(table, parquet)
    s3.put_object(Bucket=s3_bucket, Key="in/people.parquet", Body=parquet.getvalue())
    s3.put_object(Bucket=s3_bucket, Key="in/people.csv", Body=b"name,year\nalan,1912\n")

    from_parquet = db.execute(
        f"SELECT name FROM 's3://{s3_bucket}/in/people.parquet' WHERE year > 1900 ORDER BY name"
    ).fetchall()
    from_csv = db.execute(f"SELECT name, year FROM 's3://{s3_bucket}/in/people.csv'").fetchall()
    db.execute(
        f"COPY (SELECT * FROM 's3://{s3_bucket}/in/*.parquet' ORDER BY year)"
        f" TO 's3://{s3_bucket}/out/people.csv' (HEADER)"
    )
    written = s3.get_object(Bucket=s3_bucket, Key="out/people.csv")["Body"].read()

    assert from_parquet == [("edsger",), ("grace",)]
    assert from_csv == [("alan", 1912)]
    assert written == b"name,year\nada,1815\ngrace,1906\nedsger,1930\n"


def test_missing_object_and_bucket(db: duckdb.DuckDBPyConnection, s3_bucket: str) -> None:
    """A key or bucket that does not exist fails the query with the status, not wrong rows."""
    with pytest.raises(duckdb.IOException, match="404"):
        db.execute(f"SELECT * FROM 's3://{s3_bucket}/absent.parquet'").fetchall()
    with pytest.raises(duckdb.IOException, match="404"):
        db.execute(f"SELECT * FROM 's3://{s3_bucket}-absent/t.parquet'").fetchall()
