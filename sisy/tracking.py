"""Remember what a model instance was loaded with, so saving writes only what changed.

A Task copy shown in the admin for a minute must not write back, over what a
worker recorded meanwhile, the fields nobody edited.
"""


class LoadedFields:
    """A model mixin: `_loaded` holds the values read from the database, by attribute name."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._loaded = None

    @classmethod
    def from_db(cls, db, field_names, values):
        instance = super().from_db(db, field_names, values)
        instance._remember_loaded()
        return instance

    def refresh_from_db(self, using=None, fields=None):
        """Reload fields; what was reloaded (a deferred field on first use too) counts as
        loaded, so saving does not write it back over what a worker wrote meanwhile."""
        refreshed = [field.attname for field in self._meta.concrete_fields
                     if (field.attname in fields if fields is not None
                         else field.attname in self.__dict__)]
        super().refresh_from_db(using=using, fields=fields)
        if self._loaded is not None:
            self._loaded.update((name, getattr(self, name)) for name in refreshed)

    def _remember_loaded(self):
        self._loaded = {field.attname: getattr(self, field.attname)
                        for field in self._meta.concrete_fields
                        if field.attname in self.__dict__}

    def _changed_fields(self):
        """Fields changed since loading; a deferred field counts once it is set. None if new."""
        if self._loaded is None or self._state.adding:
            return None
        deferred_set = [field.attname for field in self._meta.concrete_fields
                        if field.attname not in self._loaded and field.attname in self.__dict__]
        return [name for name, value in self._loaded.items()
                if getattr(self, name) != value] + deferred_set
