from setuptools import find_packages, setup

with open('README.rst') as readme:
    long_description = readme.read()

setup(
    name='sisy',
    version='1.0.0',
    description='Cron-style background tasks for Django on Channels 1.x, without Celery.',
    long_description=long_description,
    license='MIT',
    packages=find_packages(include=['sisy', 'sisy.*']),
    include_package_data=True,
    # Django 2.2 and Channels 1.x fail on Python 3.12 (distutils is gone, Django's
    # bundled six breaks). Django 1.11 runs on 3.6 and 3.7.
    python_requires='>=3.6,<3.12',
    install_requires=[
        'Django>=1.11,<3.0',  # Channels 1.x imports django.utils.six, gone in 3.0
        'channels>=1.1.8,<2',
        'asgiref>=1.1.2,<2',
        'croniter>=1.0',
        'pytz',
        'prometheus_client>=0.17',  # sisy.urls' metrics view; 0.17.1 is the last for Python 3.6
    ],
    extras_require={
        # The embedded default layer: works across processes on one machine.
        # asgi_ipc imports pkg_resources: setuptools 80.9 warns about it on stderr, 82 removed it.
        'ipc': ['asgi-ipc==1.4.2', 'msgpack<1.0', 'setuptools<80.9'],
        # Scale-out: Redis channel layer (msgpack 1.x breaks asgi_redis receives).
        'redis': ['asgi-redis==1.4.3', 'redis>=2.10,<3', 'msgpack<1.0'],
        # psycopg2 2.9 breaks Django 2.2, and no psycopg2 below 2.9 imports on Python 3.11:
        # there the extra installs nothing rather than a psycopg2 that cannot work, and
        # PostgreSQL is not available (use SQLite, or Python 3.9 or 3.10).
        'postgresql': ['psycopg2-binary>=2.7,<2.9; python_version < "3.11"'],
    },
    classifiers=[
        'Development Status :: 5 - Production/Stable',
        'Environment :: Web Environment',
        'Framework :: Django',
        'Framework :: Django :: 1.11',
        'Framework :: Django :: 2.2',
        'Intended Audience :: Developers',
        'License :: OSI Approved :: MIT License',
        'Operating System :: POSIX',
        'Programming Language :: Python :: 3',
        'Programming Language :: Python :: 3.6',
        'Programming Language :: Python :: 3.7',
        'Programming Language :: Python :: 3.8',
        'Programming Language :: Python :: 3.9',
        'Programming Language :: Python :: 3.10',
        'Programming Language :: Python :: 3.11',
        'Topic :: System :: Distributed Computing',
    ],
)
