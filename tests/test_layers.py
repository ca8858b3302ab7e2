"""Sisy's modules form layers: each imports only from its own layer or below, never in a cycle.

Every import counts, function-local ones included: an import written inside a
function to dodge a cycle is still a cycle for a reader.
"""

import ast
import os

import sisy

PACKAGE = os.path.dirname(sisy.__file__)

# Lowest first. A module imports only from its own layer or a lower one.
LAYERS = (
    ('conf', 'errors', 'schedule', 'callables', 'describe', 'heartbeat', 'signals'),
    ('models', 'validation', 'tracking'),
    ('storage', 'ledger', 'retries', 'history', 'doorbells', 'results'),
    ('lifecycle',),
    ('dispatch', 'runner'),
    ('consumers', 'testing', 'tasks', 'admin', 'admin_forms', 'admin_preview', 'admin_jobs',
     'health', 'metrics', 'management', 'apps', 'checks', 'routing', 'urls', 'migrations'),
)


def sisy_modules():
    """{dotted name below sisy: path} of every module of the package."""
    found = {}
    for folder, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith('.py'):
                path = os.path.join(folder, name)
                relative = os.path.relpath(path, PACKAGE)[:-3].replace(os.sep, '.')
                if relative.endswith('__init__'):
                    relative = relative[:-len('__init__')].rstrip('.')
                found[relative or '__init__'] = path
    return found


def imports_of(path, modules):
    """The sisy modules (dotted names below sisy) that the file at `path` imports anywhere."""
    with open(path) as source:
        tree = ast.parse(source.read(), path)
    named = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + ['%s.%s' % (node.module, alias.name) for alias in node.names]
        else:
            continue
        for name in names:
            if name.startswith('sisy.') and name[len('sisy.'):] in modules:
                named.add(name[len('sisy.'):])
    return named


def graph():
    modules = sisy_modules()
    return {module: imports_of(path, modules) - {module} for module, path in modules.items()}


def layer_of(module):
    top = module.split('.')[0]
    for number, layer in enumerate(LAYERS):
        if top in layer:
            return number
    return None


def test_every_module_has_a_layer():
    unplaced = sorted(module for module in graph() if module != '__init__'
                      and layer_of(module) is None)
    assert unplaced == [], 'give these modules a layer in LAYERS: %s' % unplaced


def test_no_module_imports_from_a_layer_above_its_own():
    upward = sorted('%s -> %s' % (module, target)
                    for module, targets in graph().items() if layer_of(module) is not None
                    for target in targets
                    if layer_of(target) is not None and layer_of(target) > layer_of(module))
    assert upward == []


def test_no_import_cycles():
    edges = graph()
    cycles, state = [], {}

    def visit(module, path):
        state[module] = 'open'
        for target in sorted(edges.get(module, ())):
            if state.get(target) == 'open':
                cycles.append(' -> '.join(path[path.index(target):] + [target]))
            elif target not in state:
                visit(target, path + [target])
        state[module] = 'done'

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
    assert cycles == []
