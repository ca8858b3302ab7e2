"""Every callable kind, given as an object and as a dotted path, and every bad one."""

import functools
import uuid

import pytest

from sisy.callables import CallableNotFound, describe_callable, load_callable
from tests.testapp import tasks
from tests.testapp.models import Counter, NamedThing, UUIDThing

pytestmark = pytest.mark.django_db


def round_trip(the_callable, **kwargs):
    info = describe_callable(the_callable, **kwargs)
    return info, load_callable(info)


def test_function_as_object_and_path():
    for given in (tasks.record, 'tests.testapp.tasks.record'):
        info, loaded = round_trip(given)
        assert info == {'module': 'tests.testapp.tasks', 'qualname': 'record', 'kind': 'function'}
        assert loaded is tasks.record


def test_classmethod_as_object_and_path():
    for given in (Counter.bump_all, 'tests.testapp.models.Counter.bump_all'):
        info, loaded = round_trip(given)
        assert info['kind'] == 'classmethod'
        assert loaded == Counter.bump_all


def test_staticmethod_as_object_and_path():
    for given in (Counter.static_bump, 'tests.testapp.models.Counter.static_bump'):
        info, loaded = round_trip(given)
        assert info['kind'] == 'staticmethod'
        assert loaded is Counter.static_bump


def test_instance_method_of_integer_keyed_model():
    counter = Counter.objects.create(name='a')
    info, loaded = round_trip(counter.bump)
    assert info == {'module': 'tests.testapp.models', 'qualname': 'Counter.bump',
                    'kind': 'method', 'model': 'testapp.Counter', 'model_pk': counter.pk}
    loaded({'task': None, 'message': None})
    counter.refresh_from_db()
    assert counter.hits == 1


def test_instance_method_of_uuid_keyed_model():
    thing = UUIDThing.objects.create()
    info, loaded = round_trip(thing.bump)
    assert info['model_pk'] == str(thing.pk)
    loaded({'task': None, 'message': None})
    assert UUIDThing.objects.get(pk=thing.pk).hits == 1


def test_instance_method_of_string_keyed_model():
    thing = NamedThing.objects.create(code='alpha')
    info, loaded = round_trip(thing.bump)
    assert info['model_pk'] == 'alpha'
    assert loaded.__self__ == thing


def test_instance_method_by_dotted_path_and_pk_override():
    thing = UUIDThing.objects.create()
    info, loaded = round_trip('tests.testapp.models.UUIDThing.bump', pk_override=str(thing.pk))
    assert info['model'] == 'testapp.UUIDThing'
    assert loaded.__self__.pk == thing.pk


def test_deleted_instance_is_reported():
    counter = Counter.objects.create(name='gone')
    info = describe_callable(counter.bump)
    counter.delete()
    with pytest.raises(CallableNotFound, match='no longer exists'):
        load_callable(info)


def test_removed_function_is_reported():
    info = {'module': 'tests.testapp.tasks', 'qualname': 'renamed_long_ago', 'kind': 'function'}
    with pytest.raises(CallableNotFound, match="no attribute 'renamed_long_ago'"):
        load_callable(info)


@pytest.mark.parametrize('given, named, says', [
    ('tests.testapp', "'tests.testapp'", 'is a module'),
    ('tests.testapp.tasks', "'tests.testapp.tasks'", 'is a module'),
    ('tests.testapp.models.Counter', "'tests.testapp.models.Counter'", 'is a class'),
    ('tests.testapp.tasks.missing', "'tests.testapp.tasks.missing'",
     "Module 'tests.testapp.tasks' has no attribute 'missing'"),
    ('tests.testapp.models.Counter.missing', "'tests.testapp.models.Counter.missing'",
     "'tests.testapp.models.Counter' has no attribute 'missing'"),
    ('nowhere.at.all', "'nowhere.at.all'", 'no module nowhere can be imported'),
    ('tests.testapp.tasks.two_args', "'tests.testapp.tasks.two_args'", 'takes (message, extra)'),
    ('tests.testapp.tasks.wrong_name', "'tests.testapp.tasks.wrong_name'", 'named "message"'),
    ('tests.testapp.tasks.not_callable', "'tests.testapp.tasks.not_callable'", 'is a int'),
    ('tests.testapp.tasks.Plain.method', "'tests.testapp.tasks.Plain.method'", 'not a Django model'),
    ('tests.testapp.models.Counter.bump', "'tests.testapp.models.Counter.bump'", 'pk_override'),
    ('tests.testapp.models.Counter.wrong_signature', 'wrong_signature', 'pk_override'),
    ('os.path;rm', "'os.path;rm'", 'dotted path'),
])
def test_bad_dotted_paths(given, named, says):
    with pytest.raises(ValueError) as error:
        describe_callable(given)
    assert named in str(error.value)
    assert says in str(error.value)


def test_bad_signature_of_model_method_with_pk():
    counter = Counter.objects.create(name='x')
    with pytest.raises(ValueError, match=r'takes \(msg\)'):
        describe_callable(counter.wrong_signature)


def test_bad_pk_override_for_uuid_model():
    with pytest.raises(ValueError, match="pk_override 'not-a-uuid'.*UUIDField"):
        describe_callable('tests.testapp.models.UUIDThing.bump', pk_override='not-a-uuid')


def test_pk_override_on_a_plain_function():
    with pytest.raises(ValueError, match='is a function, not an instance method'):
        describe_callable('tests.testapp.tasks.record', pk_override=3)


@pytest.mark.parametrize('given, says', [
    (lambda message: None, 'lambdas'),
    (tasks, 'not a function'),
    (Counter, 'not a function'),
    (tasks.Plain().method, 'only supported on Django model instances'),
    (Counter(name='unsaved').bump, 'save the instance first'),
    (tasks.Plain.method, 'not a Django model'),
    (uuid.uuid4, 'takes ()'),
    (functools.partial(tasks.record), 'is not a function or method, so a worker has no name'),
])
def test_bad_objects(given, says):
    with pytest.raises(ValueError) as error:
        describe_callable(given)
    assert says in str(error.value)


def test_nested_function_is_refused():
    def inner(message):
        pass
    with pytest.raises(ValueError, match='inside other functions'):
        describe_callable(inner)


@pytest.mark.parametrize('path, module, package', [
    ('tests.testapp.mail.send_reminder', 'tests.testapp.mail', 'tests.testapp'),
    ('tests.mail.send_reminder', 'tests.mail', 'tests'),
    ('tests.testapp.mail.Mailer.send', 'tests.testapp.mail', 'tests.testapp'),
])
def test_a_missing_module_is_named(path, module, package):
    """The path's module does not exist: say so, not "package has no attribute 'mail.x'"."""
    with pytest.raises(ValueError) as error:
        describe_callable(path)
    assert str(error.value) == (
        "Cannot use %r as a task: no module %s can be imported (package %s has no module "
        "or attribute 'mail')." % (path, module, package))


def test_a_module_that_fails_to_import_is_not_called_missing(tmp_path, monkeypatch):
    """ImportError inside an existing module is that module's failure, not "no module"."""
    package = tmp_path / 'sisy_probe_pkg'
    package.mkdir()
    (package / '__init__.py').write_text('')
    (package / 'jobs.py').write_text('import sisy_probe_nowhere\n\ndef run(message):\n    pass\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ValueError) as error:
        describe_callable('sisy_probe_pkg.jobs.run')
    assert "Importing 'sisy_probe_pkg.jobs' for task 'sisy_probe_pkg.jobs.run' failed" in str(
        error.value)
    assert "No module named 'sisy_probe_nowhere'" in str(error.value)


def shell_function(source, namespace):
    """Define a function as `manage.py shell` does: console, exec() or a script's __main__."""
    exec(source, namespace)
    return namespace['send_reminder']


SHELL_SOURCE = 'def send_reminder(message):\n    pass\n'


@pytest.mark.parametrize('namespace, where', [
    ({}, 'no module (an interactive shell such as manage.py shell)'),
    ({'__name__': '__main__'}, "module '__main__' (a script or an interactive shell)"),
    ({'__name__': '__console__'}, "module '__console__' (a script or an interactive shell)"),
    ({'__name__': 'tests.testapp.tasks'}, "module 'tests.testapp.tasks', which has no "
                                          "'send_reminder'"),
])
def test_a_function_defined_in_a_shell_must_move_to_a_module(namespace, where):
    function = shell_function(SHELL_SOURCE, namespace)
    with pytest.raises(ValueError) as error:
        describe_callable(function)
    message = str(error.value)
    assert message.startswith('%r was defined in %s, so a worker cannot import it.'
                              % (function, where))
    assert ('A task function must live in an importable module of your project: put it in '
            'e.g. myapp/tasks.py and pass it from there (from myapp.tasks import send_reminder) '
            'or by its dotted path, "myapp.tasks.send_reminder".') in message


def test_run_once_names_the_missing_module():
    from sisy.models import Task
    with pytest.raises(ValueError, match='no module tests.testapp.mail can be imported'):
        Task.run_once('tests.testapp.mail.send_reminder')
    assert not Task.objects.exists()
