"""A task module that fails on import, as a module with a typo does."""

undefined_name_at_import  # noqa: F821  (raises NameError when imported)


def anything(message):
    pass
