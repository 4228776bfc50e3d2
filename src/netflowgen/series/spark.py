"""Node series on Apache Spark: the single-machine builder, run per node bucket.

Spark only moves data; every feature is computed by the Polars code of ``series.build``:

  1. ``mapInArrow`` over the flows: each batch goes through :func:`~netflowgen.series.build.node_view`
     (one row per flow and node it touches) and gets its node bucket from
     :func:`~netflowgen.series.build.node_bucket`, the rule the Polars engine splits parts by.
  2. ``groupBy(bucket).applyInArrow``: each bucket's node view is built into series by the same
     builder as ``--engine polars``, with the coverage computed once on the driver, and written
     as part file ``part-{bucket:05d}.parquet`` of the artifact's temporary folder. Only a
     summary row per bucket comes back to the driver, which writes the manifest and renames the
     folder into place. A node's rows all lie in one bucket, so zero-filling and ``max_gap``
     see each node whole, as on one machine.

With ``buckets`` equal to the Polars engine's ``--partitions`` the part files hold the same rows;
with any bucket count the series is the same, compared sorted.

Memory per executor is bounded by the largest bucket's node view and series, not by the input.
pyspark is an optional extra (``pip install 'netflowgen[spark]'``) and is imported only here.
"""

from __future__ import annotations

import json
import logging
import os
import re
import resource
import shutil
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl
import pyarrow as pa

from netflowgen.artifacts import MANIFEST_NAME, atomic_directory
from netflowgen.dataset.coverage import Coverage, CoverageBuilder
from netflowgen.dataset.layout import PART_GLOB, part_files
from netflowgen.dataset.spark import settle
from netflowgen.read import ReadOptions
from netflowgen.schema import FLOW_SCHEMA, empty_flows
from netflowgen.series.build import SeriesSpec, _covered_steps, _series_of, node_bucket, node_view
from netflowgen.series.write import merge_summaries, part_name, series_summary, write_part, write_series_manifest

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

__all__ = ["SparkUnavailable", "spark_session", "flows_frame", "build_series_spark", "default_buckets", "estimate_rows_spark", "job_error"]

log = logging.getLogger(__name__)

#: Flows per bucket that the default bucket count aims at: a bucket's node view and series are
#: held by one executor at once (about 1 KB per flow at the peak, so some 1 GB).
FLOWS_PER_BUCKET = 1_000_000
#: Estimated series rows per bucket: about 0.5 KB each at the builder's peak (measured: a
#: 10-million-row bucket took a 5.8 GB worker), so some 1 GB.
ROWS_PER_BUCKET = 2_000_000

_JAVA_PACKAGE = "openjdk-17-jre-headless"
_EXTRA = "pip install 'netflowgen[spark]'"


class SparkUnavailable(RuntimeError):
    """pyspark or Java is missing, or the master cannot be reached."""


def _require_pyspark() -> Any:
    try:
        import pyspark
    except ImportError as e:
        raise SparkUnavailable(f"--engine spark needs PySpark, an optional extra: {_EXTRA} "
                               f"(and Java: Debian package {_JAVA_PACKAGE})") from e
    return pyspark


def _require_java() -> None:
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").exists():
        return
    if shutil.which("java") is None:
        raise SparkUnavailable(f"--engine spark needs Java 17 or later and none was found (no java on PATH, no JAVA_HOME): "
                               f"install the Debian package {_JAVA_PACKAGE} (apt-get install -y {_JAVA_PACKAGE})")


def _check_master(master: str, timeout: float) -> None:
    """Fail within ``timeout`` seconds where a standalone master does not accept connections:
    Spark itself retries registration for a minute and more before it gives up."""
    if not master.startswith("spark://"):
        return
    for hostport in master[len("spark://"):].split(","):
        host, _, port = hostport.strip().rpartition(":")
        if not host or not port.isdigit():
            raise SparkUnavailable(f"not a Spark master URL: {master!r} (use spark://HOST:PORT)")
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
                return
        except OSError as e:
            last = e
    raise SparkUnavailable(f"Spark master {master} is unreachable within {timeout:g} s ({last})")


def spark_session(master: str | None = None, *, shuffle_partitions: int | None = None, connect_timeout: float = 10.0,
                  conf: dict[str, str] | None = None) -> SparkSession:
    """The Spark session the commands run on: ``master`` (``local[N]``, ``spark://HOST:PORT``,
    ``yarn``), else the ambient configuration (``spark-submit``), else ``local[*]``."""
    _require_pyspark()
    _require_java()
    from pyspark import SparkConf
    from pyspark.sql import SparkSession

    ambient = SparkConf()
    master = master or ambient.get("spark.master", None) or "local[*]"
    _check_master(master, connect_timeout)
    # Local executors must run this interpreter, the one with netflowgen installed.
    builder = SparkSession.builder.master(master).appName("netflowgen")
    if master.startswith("local"):
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        # Nothing outside needs to reach a local session: its driver listens on loopback only
        # and its web UI (which Spark would open on every interface) is off unless asked for.
        for key, value in (("spark.driver.bindAddress", "127.0.0.1"), ("spark.driver.host", "127.0.0.1"),
                           ("spark.ui.enabled", "false")):
            if not ambient.contains(key):
                builder = builder.config(key, value)
    # Timestamps cross between Spark and Arrow as UTC; a local session time zone would shift them.
    builder = builder.config("spark.sql.session.timeZone", "UTC")
    if shuffle_partitions is not None:
        builder = builder.config("spark.sql.shuffle.partitions", str(shuffle_partitions))
    for key, value in (conf or {}).items():
        builder = builder.config(key, value)
    try:
        return builder.getOrCreate()
    except Exception as e:  # py4j and Spark raise many kinds; the message is what helps
        raise SparkUnavailable(f"could not start Spark on {master}: {job_error(e)}") from e


def job_error(e: BaseException) -> str:
    """The useful line of a Spark failure: the Python error raised in a task where there is one
    (Spark wraps it in a JVM stack trace), else the exception's first line."""
    text = str(e)
    found = re.findall(r"^\s*((?:[A-Za-z_][\w.]*Error|[A-Za-z_][\w.]*Exception|SparkUnavailable): .+)$", text, re.M)
    python = [line for line in found if not line.startswith(("org.", "java.", "py4j.", "scala."))]
    if python:
        return python[-1].strip()
    return text.strip().splitlines()[0] if text.strip() else type(e).__name__


# ---- the wire: Polars types that Spark has no type for (unsigned, time zones) ---------------

def _wire_type(dtype: pl.DataType) -> pl.DataType:
    if isinstance(dtype, pl.Datetime):
        return pl.Int64()  # epoch microseconds: exact, no time zone on the way
    if dtype in (pl.UInt8, pl.UInt16, pl.Int8, pl.Int16, pl.Int32):
        return pl.Int32()
    if dtype in (pl.UInt32, pl.UInt64, pl.Int64):
        return pl.Int64()
    if dtype in (pl.String, pl.Boolean):
        return dtype
    raise TypeError(f"no Spark wire type for {dtype}")


def _to_wire(frame: pl.DataFrame, schema: pa.Schema) -> list[pa.RecordBatch]:
    """``frame`` in Spark's types, as record batches (every chunk of it: a concatenated frame
    comes out of Polars in several)."""
    cols = []
    for name, dtype in frame.schema.items():
        col = pl.col(name).dt.epoch("us") if isinstance(dtype, pl.Datetime) else pl.col(name)
        # strict: a counter past 2**63 fails loudly rather than wrapping
        cols.append(col.cast(_wire_type(dtype), strict=True).alias(name))
    return frame.select(cols).to_arrow().cast(schema).to_batches()


def _from_wire(frame: pl.DataFrame, schema: pl.Schema) -> pl.DataFrame:
    cols = []
    for name, dtype in schema.items():
        if isinstance(dtype, pl.Datetime):
            cols.append(pl.col(name).cast(pl.Datetime("us")).dt.replace_time_zone(dtype.time_zone).alias(name))
        else:
            cols.append(pl.col(name).cast(dtype, strict=True))
    return frame.select(cols)


def _spark_schema(schema: pl.Schema) -> tuple[Any, pa.Schema]:
    from pyspark.sql.types import BooleanType, IntegerType, LongType, StringType, StructField, StructType

    spark_of = {pl.Int32: IntegerType(), pl.Int64: LongType(), pl.String: StringType(), pl.Boolean: BooleanType()}
    arrow_of = {pl.Int32: pa.int32(), pl.Int64: pa.int64(), pl.String: pa.string(), pl.Boolean: pa.bool_()}
    wire = {name: _wire_type(dtype) for name, dtype in schema.items()}
    return (StructType([StructField(n, spark_of[type(t)]) for n, t in wire.items()]),
            pa.schema([pa.field(n, arrow_of[type(t)]) for n, t in wire.items()]))


def _canonical(batch: pa.RecordBatch | pa.Table, columns: tuple[str, ...] = tuple(FLOW_SCHEMA)) -> pl.DataFrame:
    """Flows as Spark hands them over (Parquet unsigned columns widened, timestamps in the
    session zone) back in the canonical types."""
    frame = pl.from_arrow(batch)
    assert isinstance(frame, pl.DataFrame)
    cols = []
    for name in columns:
        dtype = FLOW_SCHEMA[name]
        if name not in frame.columns:
            raise ValueError(f"the flows have no column {name!r}: --engine spark reads a flow dataset as `netflowgen ingest` writes it")
        if isinstance(dtype, pl.Datetime):
            cols.append(pl.col(name).dt.convert_time_zone("UTC").dt.cast_time_unit("us").alias(name))
        else:
            cols.append(pl.col(name).cast(dtype, strict=True))
    return frame.select(cols)


# ---- input ----------------------------------------------------------------------------------

def _is_local(path: str) -> bool:
    return "://" not in path or path.startswith("file://")


def flows_frame(spark: SparkSession, path: str) -> DataFrame:
    """A flow dataset (``ingest``'s layout, ``date=*/`` Parquet files, on any path Spark reads)
    or Parquet files of canonical flows, as a Spark DataFrame of the canonical columns."""
    # Absolute: the JVM resolves relative paths against its own working directory.
    local = Path(path.removeprefix("file://")).resolve()
    if _is_local(path):
        if not local.exists():
            raise FileNotFoundError(f"{path}: no such file or directory")
        if local.is_dir() and not (local / MANIFEST_NAME).is_file() and not any(local.rglob("*.parquet")):
            raise ValueError(f"{path}: no Parquet flows; --engine spark reads a flow dataset: run `netflowgen ingest` first")
        if local.is_file() and local.suffix != ".parquet":
            raise ValueError(f"{path}: --engine spark reads a Parquet flow dataset; run `netflowgen ingest {path} --out DATASET` first")
    is_dataset = _is_local(path) and (local / MANIFEST_NAME).is_file()
    if is_dataset:
        files = part_files(local)
        if not files:
            return spark.createDataFrame([], _spark_schema(pl.Schema(FLOW_SCHEMA))[0])
        # The files, not the folder: the manifest and rejects.csv are not Parquet, and the
        # date=... folders would otherwise come back as a column.
        frame = spark.read.parquet(*[str(f) for f in files])
        return frame.select(*FLOW_SCHEMA)
    elif not _is_local(path):
        source = path.rstrip("/") + "/" + PART_GLOB if not path.endswith(".parquet") else path
    else:
        source = str(local)
    frame = spark.read.parquet(source)
    missing = [c for c in FLOW_SCHEMA if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: not canonical flows (missing columns {missing}); run `netflowgen ingest` first")
    return frame.select(*FLOW_SCHEMA)


def _coverage(spark_flows: DataFrame, path: str) -> Coverage:
    """What the input observed, as ``--engine polars`` takes it: the dataset manifest's record
    where there is one, else derived from the records (the same builder, fed per partition)."""
    local = Path(path.removeprefix("file://"))
    if _is_local(path) and (local / MANIFEST_NAME).is_file():
        stored = json.loads((local / MANIFEST_NAME).read_text()).get("coverage")
        if stored:
            return Coverage.from_dict(stored)
    schema = {"source_file": pl.String(), "minute": pl.Int64(), "n": pl.Int64(), "lo": pl.Int64(), "hi": pl.Int64()}
    spark_schema, arrow = _spark_schema(pl.Schema(schema))

    def per_partition(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        builder = CoverageBuilder()
        for batch in batches:
            builder.add(_canonical(batch, ("source_file", "ts_end")))
        for part in builder.parts():
            yield from _to_wire(part.cast(schema), arrow)  # type: ignore[arg-type]

    minutes = spark_flows.select("source_file", "ts_end").mapInArrow(per_partition, spark_schema).toArrow()
    frame = pl.from_arrow(minutes)
    assert isinstance(frame, pl.DataFrame)
    return CoverageBuilder.from_parts([frame.cast(schema)]).finish()  # type: ignore[arg-type]


# ---- the job --------------------------------------------------------------------------------

def estimate_rows_spark(frame: DataFrame, config: SeriesSpec, options: ReadOptions) -> int:
    """An upper bound of the series' rows, as :func:`~netflowgen.series.build.estimate_rows`
    takes it (every node active from its first to its last step), in one pass on Spark."""
    from pyspark.sql import functions as F

    schema = pl.Schema({"node": pl.String(), "first": pl.Int64(), "last": pl.Int64()})
    spark_schema, arrow = _spark_schema(schema)

    def spans(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            view = node_view(options.select(_canonical(batch).lazy()), config)
            yield from _to_wire(view.group_by("node").agg(pl.col("step").dt.epoch("us").min().alias("first"),
                                                           pl.col("step").dt.epoch("us").max().alias("last")).collect(), arrow)

    step_us = int(config.step.total_seconds() * 1_000_000)
    per_node = frame.mapInArrow(spans, spark_schema).groupBy("node").agg(F.min("first").alias("a"), F.max("last").alias("b"))
    total = per_node.select(F.sum(F.floor((F.col("b") - F.col("a")) / step_us) + 1)).collect()[0][0]
    return int(total or 0)


def default_buckets(spark: SparkSession, n_flows: int, est_rows: int) -> int:
    """Enough buckets to keep every core busy and each bucket near FLOWS_PER_BUCKET flows and
    ROWS_PER_BUCKET series rows (the rows dominate where many nodes are quiet for long)."""
    return max(spark.sparkContext.defaultParallelism, -(-n_flows // FLOWS_PER_BUCKET), -(-est_rows // ROWS_PER_BUCKET), 1)


def _decode_summary(text: str) -> dict[str, Any]:
    s = json.loads(text)
    for key in ("first_step", "last_step"):
        if s[key] is not None:
            # Back through Polars, so the value is the very object series_summary returns.
            s[key] = pl.Series([s[key]], dtype=pl.Int64).cast(pl.Datetime("us")).dt.replace_time_zone("UTC")[0]
    return s


def _encode_summary(series: pl.DataFrame) -> str:
    s = series_summary(series)
    for key in ("first_step", "last_step"):
        if s[key] is not None:
            s[key] = int(series["step"].dt.epoch("us").min() if key == "first_step" else series["step"].dt.epoch("us").max())
    s["group_set"] = sorted(series["group"].unique().drop_nulls().to_list())
    return json.dumps(s)


def build_series_spark(spark: SparkSession, flows: str, out: Path, config: SeriesSpec, *, buckets: int | None = None,
                       options: ReadOptions | None = None, overwrite: bool = False) -> dict[str, Any]:
    """Build the series artifact of ``flows`` (any path Spark reads) into ``out`` on Spark and
    return its summary, the same as ``netflowgen series`` writes it with ``--engine polars``.

    ``out`` is a path that the driver and every executor see (a local path in local mode, a
    shared file system on a cluster). A failing bucket fails the whole job and leaves no output.
    """
    if buckets is not None and buckets < 1:
        raise ValueError("--buckets must be at least 1")
    options = options or ReadOptions()
    frame = flows_frame(spark, flows)
    coverage = _coverage(frame, flows)
    covered = _covered_steps(empty_flows().lazy(), config, coverage)
    n_flows = frame.count()
    k = buckets or default_buckets(spark, n_flows, estimate_rows_spark(frame, config, options))
    view_schema = node_view(empty_flows().lazy(), config).collect_schema()
    wire_view = pl.Schema({**view_schema, "_part": pl.Int64()})
    view_spark, view_arrow = _spark_schema(wire_view)

    def to_view(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            view = node_view(options.select(_canonical(batch).lazy()), config).with_columns(node_bucket(k)).collect()
            yield from _to_wire(view, view_arrow)

    out = Path(out)
    with atomic_directory(out, overwrite) as tmp:
        folder = str(tmp.resolve())

        def build_bucket(key: tuple[pa.Scalar, ...], table: pa.Table) -> pa.Table:
            bucket = int(key[0].as_py())
            frame = pl.from_arrow(table)
            assert isinstance(frame, pl.DataFrame)
            view = _from_wire(frame.drop("_part"), view_schema)
            series = _series_of(view.lazy(), config, covered)
            write_part(series, Path(folder) / part_name(bucket))
            # The worker's peak so far: what one bucket (and the ones before it in this
            # reused worker) needed, the memory per executor that --buckets bounds.
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
            return pa.table({"bucket": pa.array([bucket], pa.int64()), "summary": pa.array([_encode_summary(series)], pa.string()),
                             "peak_rss": pa.array([peak], pa.int64())})

        view = frame.mapInArrow(to_view, view_spark)
        try:
            rows = view.groupBy("_part").applyInArrow(build_bucket, "bucket long, summary string, peak_rss long").collect()
        except BaseException:
            settle(spark)  # the other buckets' tasks stop writing into tmp before it is removed
            raise
        done = {int(r["bucket"]): _decode_summary(r["summary"]) for r in rows}
        summary: dict[str, Any] = {}
        groups: set[str] = set()
        for b in range(k):
            if b not in done:
                # A bucket without flows: the empty part the Polars engine writes too.
                empty = _series_of(pl.LazyFrame(schema=view_schema), config, covered)
                write_part(empty, tmp / part_name(b))
                done[b] = json.loads(_encode_summary(empty))
            part = done[b]
            groups.update(part.pop("group_set"))
            summary = merge_summaries(summary, part)
        # Inputs named as the Polars engine names them (a local path normalized as pathlib does).
        inputs = [str(Path(flows)) if "://" not in flows else flows]
        write_series_manifest(tmp, summary, groups, k, config, inputs, coverage)
    summary["flows"] = n_flows
    # Not in the manifest: it varies from run to run, like the timing.
    summary["worker_peak_rss_bytes"] = max((int(r["peak_rss"]) for r in rows), default=0)
    return summary

