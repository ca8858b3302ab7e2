from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('probe', '0001_initial'),
    ]

    operations = [
        migrations.AddField(
            model_name='proberun',
            name='attempt',
            field=models.IntegerField(default=1),
        ),
    ]
