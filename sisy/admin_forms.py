"""The admin's task form: the function as a dotted path, userdata as JSON, and edits merged.

A task can change while its form is open (Sisy disables it, uses an iteration,
stores userdata); saving the form applies only what the operator edited.
"""

import datetime as dt
import json
import sys

from django import forms
from django.forms.boundfield import BoundField

from sisy.admin_preview import local
from sisy.callables import CallableNotFound, describe_callable, dotted_path, load_callable
from sisy.models import PUBLIC_FIELDS, Task, encode_userdata


class UserdataField(forms.CharField):
    """A JSON object edited as text: only a change of the data, not of its layout, counts."""

    def has_changed(self, initial, data):
        return _json_or_text(initial) != _json_or_text(data)


def _json_or_text(text):
    text = (text or '').strip() or '{}'
    try:
        return json.loads(text)
    except ValueError:
        return text


NOT_SHOWN = object()  # a post that does not say what the form showed for a field


class ShownBoundField(BoundField):
    """A field of a task being edited, with a hidden copy of the value the form showed.

    When a form with errors is shown again Django fills that copy with the posted
    value; this keeps what was first shown, so edits made before the error still
    count as edits when the form is sent again.
    """

    def as_hidden(self, attrs=None, **kwargs):
        shown = self.form.shown(self.name)
        if not kwargs.get('only_initial') or shown is NOT_SHOWN:
            return super().as_hidden(attrs, **kwargs)
        attrs = dict(attrs or {}, id=self.html_initial_id)
        return self.field.hidden_widget().render(self.html_initial_name, shown, attrs=attrs,
                                                 renderer=self.form.renderer)


class TaskForm(forms.ModelForm):
    """The task form, plus the task function given as a dotted path (and model row).

    Editing a task applies only what the operator changed from what the form
    showed: everything else keeps the value the task has now, so a form opened
    before Sisy disabled the task, used an iteration or stored userdata cannot
    undo that. Where both changed a field, the operator's value is saved and
    `overridden` lists what Sisy had set, for a warning.
    """

    function = forms.CharField(
        max_length=500,
        help_text='Dotted path of the function to run; it takes one parameter named '
                  '"message". (Example: "myapp.tasks.send_digest", or for a model '
                  'method "myapp.models.Report.refresh" with the primary key below.)')
    instance_pk = forms.CharField(
        label='Instance primary key', required=False, max_length=255,
        help_text='Only for an instance method of a model: the primary key of the row '
                  'to call it on. (Example: 42, or a UUID.) Leave blank otherwise.')
    userdata = UserdataField(
        required=False, widget=forms.Textarea(attrs={'rows': 4}),
        help_text='JSON object kept with the task; the function can read and change it '
                  'as message["task"].userdata. (Example: {"recipients": ["ops@example.com"]})')

    class Media:
        css = {'all': ('sisy/schedule_preview.css',)}
        js = ('sisy/schedule_preview.js',)

    class Meta:
        model = Task
        fields = PUBLIC_FIELDS

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.overridden = []
        self.fields['label'].required = False
        self.fields['label'].help_text = ('Any name you like. (Example: "nightly-digest"; '
                                          'blank: the function\'s dotted path.)')
        task = self.instance
        if task.pk is not None:
            for field in self.fields.values():
                field.show_hidden_initial = True  # so a post says what the form showed
            try:
                info = task.funcinfo
                self.initial['function'] = dotted_path(info)
                self.initial['instance_pk'] = info.get('model_pk', '')
            except (ValueError, KeyError):
                pass  # shown as empty; the operator can give the function again
            try:
                self.initial['userdata'] = json.dumps(task.userdata, indent=2, sort_keys=True)
            except ValueError:
                self.initial['userdata'] = task._extra_data

    def __getitem__(self, name):
        if name not in self._bound_fields_cache and name in self.fields and \
                self.fields[name].show_hidden_initial:
            self._bound_fields_cache[name] = ShownBoundField(self, self.fields[name], name)
        return super().__getitem__(name)

    def shown(self, name):
        """The raw value the form showed for `name` when rendered, or NOT_SHOWN if not posted."""
        if not self.is_bound:
            return NOT_SHOWN
        widget, key = self.fields[name].hidden_widget(), self.add_initial_prefix(name)
        if widget.value_omitted_from_data(self.data, self.files, key):
            return NOT_SHOWN
        return widget.value_from_datadict(self.data, self.files, key)

    def clean_userdata(self):
        text = self.cleaned_data['userdata'].strip() or '{}'
        try:
            data = json.loads(text)
        except RecursionError:  # the decoder recurses once per level of nesting
            raise forms.ValidationError('%s... is nested deeper than JSON can store (about %d '
                                        'levels or more). Store it flatter.'
                                        % (text[:80], sys.getrecursionlimit()))
        except ValueError as error:
            raise forms.ValidationError('%s is not valid JSON: %s. (Example: {"key": "value"})'
                                        % (text[:80], error))
        if not isinstance(data, dict):
            raise forms.ValidationError('%s is not a JSON object. (Example: {"key": "value"})'
                                        % text[:80])
        try:
            encode_userdata(data)
        except ValueError as error:
            raise forms.ValidationError(str(error))
        return data

    def clean(self):
        cleaned = super().clean()
        if self.instance.pk is not None:
            self._keep_what_was_not_edited(cleaned)
        path = (cleaned.get('function') or '').strip()
        if not cleaned.get('label') and path:
            cleaned['label'] = path
        if path and (self.instance.pk is None or
                     {'function', 'instance_pk'} & set(self.changed_data)):
            self._set_function(path, cleaned.get('instance_pk', '').strip() or None)
        if 'userdata' in cleaned and 'userdata' in self.changed_data:
            self.instance.userdata = cleaned['userdata']
        return cleaned

    def _keep_what_was_not_edited(self, cleaned):
        """Unedited fields take the task's current values; note edits over Sisy's changes.

        The instance was loaded when the form was posted, so it holds what Sisy has
        recorded since the form was shown. A post that does not say what was shown
        (no hidden copies) is applied as it is.
        """
        for name, field in self.fields.items():
            shown = self.shown(name)
            if shown is NOT_SHOWN:
                continue
            if name in self.changed_data:
                if field.has_changed(self[name].initial, shown):
                    self.overridden.append(self._as_sisy_left_it(name))
            elif name in TaskForm.Meta.fields and name in cleaned:
                cleaned[name] = getattr(self.instance, name)

    def _as_sisy_left_it(self, name):
        value = self.initial.get(name)
        if isinstance(value, dt.datetime):
            value = local(value)
        elif name == 'enabled' and not value and self.instance.disabled_reason:
            value = 'off (disabled because: %s)' % self.instance.disabled_reason
        elif isinstance(value, str) and len(value) > 80:
            value = value[:80] + '...'
        return '%s was %s' % (self[name].label, value)

    def _set_function(self, path, pk):
        try:
            info = describe_callable(path, pk_override=pk)
            if info['kind'] == 'method':
                load_callable(info)  # the row must exist now, or the task would be disabled
        except CallableNotFound as error:
            self.add_error('instance_pk', str(error))
        except ValueError as error:
            self.add_error('instance_pk' if pk and 'pk_override' in str(error) else 'function',
                           str(error))
        else:
            self.instance._func_info = json.dumps(info, sort_keys=True)
