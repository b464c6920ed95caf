"""The Great Expectations suites, one JSON file per table it checks. A data package: it installs
as ``flows.expectations``, where the code reads it through importlib.resources, from a wheel as
from a checkout."""
