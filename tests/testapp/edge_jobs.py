"""Hand-off jobs for tests/test_handoff_edges.py: values at the edges of what JSON carries."""

import numbers

from sisy.tasks import task
from tests.testapp.models import Call


class Whole:
    """A whole number that is not an int, as numpy.int64 is: numbers.Integral, not JSON."""

    def __init__(self, value):
        self.value = value

    def __int__(self):
        return self.value

    def __repr__(self):
        return 'Whole(%d)' % self.value


numbers.Integral.register(Whole)


@task
def returns_a_whole():
    Call.objects.create(label='returns_a_whole')
    return Whole(3)


@task
def record(label):
    Call.objects.create(label=label)
    return label


@task
def breaks_a_unique_key(label):
    """Makes the database refuse a row, as a job meeting a duplicate does."""
    first = Call.objects.create(label=label)
    Call.objects.create(pk=first.pk, label=label)


@task
def returns_a_huge_number():
    """More digits than Python writes as text (sys.get_int_max_str_digits(), 4300 by default)."""
    return 10 ** 5000
