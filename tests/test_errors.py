"""Telling outages from permanent errors, and texts any database can store."""

import os

from django.db import DataError, IntegrityError, InterfaceError, OperationalError

from sisy.errors import first_line, is_outage, storable_text


def test_only_connection_and_lock_trouble_counts_as_an_outage():
    assert is_outage(OperationalError('server closed the connection unexpectedly'))
    assert is_outage(InterfaceError('connection already closed'))
    assert not is_outage(IntegrityError('foreign key violation'))
    assert not is_outage(DataError('integer out of range'))
    assert not is_outage(OverflowError('date value out of range'))


def test_a_non_utf8_file_name_is_stored_as_escapes_of_its_bytes():
    name = os.fsdecode(b'report-\xff.csv')
    assert storable_text('cannot parse ' + name) == 'cannot parse report-\\xff.csv'
    storable_text(name).encode('utf-8')  # does not raise


def test_nul_characters_are_removed_and_plain_text_is_kept():
    assert storable_text('a\x00b') == 'ab'
    assert storable_text('déjà vu ✓') == 'déjà vu ✓'
    assert storable_text('\ud800 lone').encode('utf-8')


def test_first_line_of_an_error_or_its_type():
    assert first_line(ValueError('one\ntwo')) == 'one'
    assert first_line(ValueError()) == 'ValueError'
