"""The demo page's button now hands off a @task job, whose result Sisy keeps:
the table the old Task.run_once button wrote to goes."""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('demoapp', '0002_standing_tasks'),
    ]

    operations = [
        migrations.DeleteModel(
            name='OneOffRun',
        ),
    ]
