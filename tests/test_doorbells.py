"""Doorbells rung when a transaction commits: one hook per transaction, none for what rolled back."""

import pytest
from django.db import transaction

from tests.testapp import jobs
from tests.testapp.models import Call


@pytest.mark.django_db(transaction=True)
def test_jobs_of_one_transaction_ring_until_the_channel_is_full_not_once_each(worker, monkeypatch):
    """A transaction that hands off more jobs than the channel holds asks the layer once per
    free place (and once more to learn it is full), not once per job; all the jobs run."""
    layer = worker.layer.channel_layer
    sends = []
    send = layer.send

    def counting_send(channel, message):
        sends.append(channel)
        return send(channel, message)

    monkeypatch.setattr(layer, 'send', counting_send)
    with transaction.atomic():
        for number in range(layer.capacity + 50):
            jobs.label_call.enqueue('job-%d' % number)
    assert len(sends) == layer.capacity + 1
    assert len(worker.pending('sisy.run_task')) == layer.capacity
    worker.deliver()
    assert Call.objects.count() == layer.capacity + 50


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_savepoint_rings_for_none_of_its_jobs(worker):
    with transaction.atomic():
        kept = jobs.label_call.enqueue('kept')
        with pytest.raises(RuntimeError):
            with transaction.atomic():
                jobs.label_call.enqueue('dropped')
                raise RuntimeError('roll this savepoint back')
        after = jobs.label_call.enqueue('after')
    named = [message['run_id'] for _, message in worker.pending('sisy.run_task')]
    assert named == [int(kept.id), int(after.id)]
    with pytest.raises(RuntimeError):
        with transaction.atomic():
            jobs.label_call.enqueue('rolled back')
            raise RuntimeError('roll it all back')
    assert len(worker.pending('sisy.run_task')) == 2
