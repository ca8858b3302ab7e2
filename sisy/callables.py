"""Turn a task function into storable info, and that info back into a callable.

Info is a small JSON-able dict: where the function lives and, for a model
instance method, which model row to fetch. Nothing is pickled or evaluated.
"""

import importlib
import inspect

from sisy.errors import is_outage

KINDS = ('function', 'classmethod', 'staticmethod', 'method')
SIGNATURE_HELP = 'a task function takes exactly one parameter, named "message"'
# Modules a worker can import, but whose code is not where a function was defined:
# the script or shell that runs as __main__, and the interactive console's namespace.
NOT_IMPORTABLE = ('__main__', '__console__')


class CallableNotFound(LookupError):
    """Stored callable info no longer leads to a callable (removed code or model row)."""


def describe_callable(the_callable, pk_override=None):
    """Return the info dict for a callable object or its dotted path.

    Raises ValueError naming the callable and what is wrong with it.
    """
    if isinstance(the_callable, str):
        info = _info_from_path(the_callable, pk_override)
    elif pk_override is not None:
        raise ValueError('pk_override is only used with a dotted path to a model '
                         'instance method; %r already is an object.' % (the_callable,))
    else:
        info = _info_from_object(the_callable)
    return info


def dotted_path(info):
    """The dotted path of the function an info dict names."""
    return '%s.%s' % (info['module'], info['qualname'])


def load_callable(info):
    """Return the callable an info dict names, fetching the model instance if any.

    Raises CallableNotFound when the code or the model row has gone or the
    module cannot be imported; anything else (a database error fetching the
    row) is raised as it is, since it may pass.
    """
    owner, function = _import_path(info['module'], info['qualname'])
    if info['kind'] != 'method':
        return function
    from django.apps import apps
    try:
        model = apps.get_model(info['model'])
    except LookupError as error:
        raise CallableNotFound('Model %r of %s is not installed: %s'
                               % (info['model'], dotted_path(info), error))
    try:
        instance = model._default_manager.get(pk=info['model_pk'])
    except model.DoesNotExist:
        raise CallableNotFound('%s with primary key %r no longer exists (needed by %s).'
                               % (info['model'], info['model_pk'], dotted_path(info)))
    return getattr(instance, info['qualname'].rsplit('.', 1)[-1])


def _import_path(module_name, qualname):
    try:
        target = importlib.import_module(module_name)
    except ImportError as error:
        raise CallableNotFound('Cannot import module %r: %s' % (module_name, error))
    except Exception as error:  # the module's own code fails: a SyntaxError, a NameError, ...
        if is_outage(error):
            raise  # a query at import time met a passing database error
        raise CallableNotFound('Importing module %r failed: %s: %s'
                               % (module_name, type(error).__name__, error)) from error
    owner = None
    found = module_name
    for part in qualname.split('.'):
        owner = target
        try:
            target = getattr(target, part)
        except AttributeError:
            if owner is not None and found == module_name and hasattr(owner, '__path__'):
                # A package without this submodule: the path names a module that is not there.
                raise CallableNotFound(
                    'no module %s can be imported (package %s has no module or attribute %r).'
                    % (found + '.' + part, module_name, part))
            raise CallableNotFound('%s %r has no attribute %r.' % (
                'Module' if found == module_name else 'Object', found, part))
        found += '.' + part
    return owner, target


def _split_path(path):
    """Import the longest module prefix of `path`; return (module name, qualname)."""
    parts = path.split('.')
    if len(parts) < 2 or not all(part.isidentifier() for part in parts):
        raise ValueError('%r is not a dotted path to a function, such as '
                         '"myapp.tasks.nightly_cleanup".' % (path,))
    for split in range(len(parts) - 1, 0, -1):
        module_name = '.'.join(parts[:split])
        try:
            importlib.import_module(module_name)
        except ImportError as error:
            # Only "this module (or a parent) does not exist" means: try a shorter prefix.
            # A module that exists but fails to import must be reported as such.
            missing = getattr(error, 'name', None)
            if not missing or not (module_name == missing
                                   or module_name.startswith(missing + '.')):
                raise ValueError('Importing %r for task %r failed: %s' % (module_name, path, error))
            continue
        return module_name, '.'.join(parts[split:])
    raise ValueError('Cannot use %r as a task: no module %s can be imported; expected a dotted '
                     'path to a function in your project, such as "myapp.tasks.nightly_cleanup".'
                     % (path, parts[0]))


def _info_from_path(path, pk_override):
    module_name, qualname = _split_path(path)
    try:
        owner, target = _import_path(module_name, qualname)
    except CallableNotFound as error:
        raise ValueError('Cannot use %r as a task: %s' % (path, error))
    kind = _kind(owner, qualname, target, path)
    info = {'module': module_name, 'qualname': qualname, 'kind': kind}
    if kind == 'method':
        if pk_override is None:
            raise ValueError('%r is an instance method of %s; name the instance with '
                             'pk_override=<primary key>, or pass the bound method '
                             '(instance.method).' % (path, owner.__name__))
        info.update(_model_info(owner, pk_override, path))
        _check_signature(target, path, skip_self=True)
    else:
        if pk_override is not None:
            raise ValueError('pk_override was given, but %r is a %s, not an instance '
                             'method of a model.' % (path, kind))
        _check_signature(target, path)
    return info


def _info_from_object(obj):
    bound_to = getattr(obj, '__self__', None)
    if inspect.ismethod(obj) and not inspect.isclass(bound_to):
        # A method bound to an instance: only model rows can be fetched again.
        path = '%s.%s' % (getattr(obj, '__module__', '?'), obj.__qualname__)
        from django.db.models import Model
        if not isinstance(bound_to, Model):
            raise ValueError('%s is bound to a %s instance; instance methods are only '
                             'supported on Django model instances, which a worker can '
                             'fetch again by primary key.' % (path, type(bound_to).__name__))
        if bound_to.pk is None:
            raise ValueError('%s is bound to an unsaved %s; save the instance first so a '
                             'worker can fetch it by primary key.'
                             % (path, type(bound_to).__name__))
        info = _info_from_path(path, bound_to.pk)
        return info
    if inspect.isclass(obj) or inspect.ismodule(obj) or not callable(obj):
        raise ValueError('%r is not a function or method; %s.' % (obj, SIGNATURE_HELP))
    module_name = getattr(obj, '__module__', None)
    qualname = getattr(obj, '__qualname__', None)
    if not qualname:
        raise ValueError('%r is not a function or method, so a worker has no name to import '
                         'it by; use a function, classmethod or staticmethod defined at module '
                         'level.' % (obj,))
    if '<' in qualname:
        raise ValueError('%r cannot be imported by a worker (lambdas and functions defined '
                         'inside other functions have no importable path); define it at '
                         'module level.' % (obj,))
    _check_importable(obj, module_name, qualname)
    path = '%s.%s' % (module_name, qualname)
    info = _info_from_path(path, None)
    return info


def _check_importable(obj, module_name, qualname):
    """Refuse functions a worker cannot import again: shell, script or exec() definitions."""
    name = qualname.rsplit('.', 1)[-1]
    if module_name in NOT_IMPORTABLE:
        where = 'module %r (a script or an interactive shell)' % (module_name,)
    elif not module_name:
        where = 'no module (an interactive shell such as manage.py shell)'
    else:
        try:
            _import_path(module_name, qualname)
            return
        except CallableNotFound:
            where = 'module %r, which has no %r' % (module_name, qualname)
    raise ValueError(
        '%r was defined in %s, so a worker cannot import it. A task function must live in '
        'an importable module of your project: put it in e.g. myapp/tasks.py and pass it '
        'from there (from myapp.tasks import %s) or by its dotted path, '
        '"myapp.tasks.%s".' % (obj, where, name, name))


def _kind(owner, qualname, target, path):
    """Classify what `path` names; raise ValueError for what cannot be a task."""
    if inspect.ismodule(target):
        raise ValueError('%r is a module, not a function; %s.' % (path, SIGNATURE_HELP))
    if inspect.isclass(target):
        raise ValueError('%r is a class, not a function; %s.' % (path, SIGNATURE_HELP))
    if not callable(target):
        raise ValueError('%r is a %s, not a function; %s.'
                         % (path, type(target).__name__, SIGNATURE_HELP))
    if inspect.ismodule(owner):
        return 'function'
    if not inspect.isclass(owner):
        raise ValueError('%r is not a function of a module or a method of a class.' % (path,))
    raw = inspect.getattr_static(owner, qualname.rsplit('.', 1)[-1])
    if isinstance(raw, classmethod):
        return 'classmethod'
    if isinstance(raw, staticmethod):
        return 'staticmethod'
    from django.db.models import Model
    if inspect.isfunction(raw) and issubclass(owner, Model):
        return 'method'
    raise ValueError('%r is an instance method of %s, which is not a Django model; only '
                     'model instance methods can run as tasks (a worker fetches the row by '
                     'primary key). Use a function, classmethod or staticmethod instead.'
                     % (path, owner.__name__))


def _model_info(model, pk, path):
    """Check `pk` against the model's primary key field and return it in JSON form."""
    from django.core.exceptions import ValidationError
    field = model._meta.pk
    try:
        value = field.to_python(pk)
    except (ValidationError, TypeError, ValueError):
        raise ValueError('pk_override %r for %r is not a valid %s primary key (%s).'
                         % (pk, path, model.__name__, field.get_internal_type()))
    if isinstance(value, (int, str)):
        stored = value
    else:
        stored = str(value)  # UUID and other keys round-trip through their text form
    return {'model': model._meta.label, 'model_pk': stored}


def _check_signature(function, path, skip_self=False):
    try:
        parameters = list(inspect.signature(function).parameters.values())
    except (TypeError, ValueError):
        raise ValueError('Cannot read the signature of %r; %s.' % (path, SIGNATURE_HELP))
    if skip_self:
        parameters = parameters[1:]
    names = [parameter.name for parameter in parameters]
    if names != ['message'] or parameters[0].kind not in (
            inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.POSITIONAL_ONLY):
        raise ValueError('%r takes (%s); %s.' % (path, ', '.join(names), SIGNATURE_HELP))


# -- hand-off jobs (sisy.tasks): a function kept as 'module:qualname' ----------------


def job_path(function):
    """The 'module:qualname' a worker imports a hand-off job's function by.

    Raises ValueError, as for tasks, for what a worker cannot import again
    (lambdas, nested functions, functions of a shell or script).
    """
    module_name = getattr(function, '__module__', None)
    qualname = getattr(function, '__qualname__', None)
    if not qualname or '<' in qualname:
        raise ValueError('%r cannot be imported by a worker (lambdas and functions defined '
                         'inside other functions have no importable path); define it at '
                         'module level.' % (function,))
    _check_importable(function, module_name, qualname)
    return '%s:%s' % (module_name, qualname)


def load_job(path):
    """What a job's 'module:qualname' names now; CallableNotFound if it is gone."""
    module_name, _, qualname = path.partition(':')
    return _import_path(module_name, qualname)[1]
