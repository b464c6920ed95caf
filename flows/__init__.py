"""Vehicle data pipeline: fleet GPS events from S3 to a Parquet lake and a PostgreSQL warehouse."""

__version__ = "0.1.0"
