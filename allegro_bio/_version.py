__version__ = "0.1.0"
#: Version of the deployed-file format; bumped when the metadata contract changes.
FORMAT_VERSION = 1
