from django.db import migrations, models


class Migration(migrations.Migration):

    initial = True

    dependencies = [
    ]

    operations = [
        migrations.CreateModel(
            name='ProbeRun',
            fields=[
                ('id', models.AutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('label', models.CharField(max_length=255)),
                ('tag', models.CharField(blank=True, max_length=100)),
                ('run_id', models.IntegerField(null=True)),
                ('pid', models.IntegerField()),
                ('at', models.DateTimeField()),
                ('ended', models.DateTimeField(null=True)),
            ],
        ),
    ]
