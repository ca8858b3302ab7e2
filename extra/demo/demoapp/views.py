"""The demo page: Sisy's tasks and recent runs, and a button that starts Task.run_once."""

from django.contrib import messages
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from demoapp.models import Counter, OneOffRun
from sisy.models import Task, TaskRun


def index(request):
    return render(request, 'demoapp/index.html', {
        'now': timezone.now(),
        'tasks': Task.objects.order_by('label'),
        'runs': TaskRun.objects.all()[:15],
        'counters': Counter.objects.all(),
        'one_offs': OneOffRun.objects.all()[:5],
    })


@require_POST
def run_once(request):
    task = Task.run_once('demoapp.tasks.one_off',
                         userdata={'requested_at': timezone.now().isoformat()})
    messages.info(request, 'Started task %s (%s): it runs at the next heartbeat.'
                  % (task.pk, task.label))
    return redirect('index')
