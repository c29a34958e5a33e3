"""Data errors whose message alone says what is wrong and how to fix it (the CLI prints it without a
traceback). Each is a subclass of the built-in a caller would already catch."""


class DataFileNotFoundError(FileNotFoundError):
    """A data set's folder or files are missing: the message names where it looked and what to get."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self):  # FileNotFoundError(msg) alone prints fine, but keep one paragraph whatever the args
        return self.message


class DataCorruptError(ValueError):
    """A data file is truncated, malformed, or not the official file its header claims to be."""


class DataConfigError(ValueError):
    """A data-set setting (n_train, n_test, ...) outside its valid range."""


def check_count(key: str, value, available: int | None = None):
    """None keeps a whole split; otherwise an int in [1, available] (no upper bound when available is
    None: synthetic sets draw as many as asked). Returns the value as an int or None.

    bool is refused although it is an int subclass: `n_train: true` is a typo, not 1 example.
    """
    if value is None:
        return None
    upper = "" if available is None else f", {available}]"
    valid = f"[1{upper}" if available is not None else "an integer >= 1"
    if isinstance(value, bool) or not isinstance(value, int) and not (
            isinstance(value, float) and value.is_integer()):
        raise DataConfigError(f"{key}={value!r} is not a whole number of examples; valid: {valid}, "
                              f"or null for the whole split.")
    value = int(value)
    if value < 1 or (available is not None and value > available):
        where = f" (the split holds {available} examples)" if available is not None else ""
        raise DataConfigError(f"{key}={value} is out of range{where}; valid: {valid}, or null for the "
                              f"whole split.")
    return value
