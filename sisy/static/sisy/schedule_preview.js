/* Sisy: the task form's live schedule preview.
 *
 * As the operator edits the schedule (or the start, end, "wait for schedule" and
 * iterations fields), asks TaskAdmin.schedule_preview_view (sisy/admin_preview.py)
 * what the schedule means and when the next runs are, and shows the answer in the
 * form's "meaning" and "next runs" rows (both aria-live="polite"). Back at the values
 * the page was rendered with, the page's own preview is shown again.
 * No framework; nothing outside this file.
 */
(function () {
    'use strict';

    var DELAY_MS = 300;
    var FIELDS = ['schedule', 'start_running_0', 'start_running_1', 'end_running_0',
                  'end_running_1', 'wait_for_schedule', 'iterations'];
    var NO_VALID_SCHEDULE = 'None: the schedule is not valid.';

    function element(tag, className, text) {
        var node = document.createElement(tag);
        if (className) { node.className = className; }
        if (text !== undefined) { node.textContent = text; }
        return node;
    }

    function list(tag, className, items) {
        var node = element(tag, className);
        items.forEach(function (item) { node.appendChild(element('li', '', item)); });
        return node;
    }

    function labelOf(form, field) {
        var label = form.querySelector('label[for="id_' + field + '"]') ||
                    form.querySelector('label[for="id_' + field + '_0"]');
        return label ? label.textContent.replace(/:\s*$/, '').trim() : field;
    }

    function start() {
        var schedule = document.getElementById('id_schedule');
        var meaning = document.querySelector('.sisy-preview-meaning');
        var runs = document.querySelector('.sisy-preview-runs[data-preview-url]');
        if (!schedule || !meaning || !runs || !schedule.form) { return; }
        var form = schedule.form;
        var url = runs.getAttribute('data-preview-url');
        var inputs = FIELDS.map(function (name) { return form.elements[name]; })
                           .filter(function (input) { return input && input.tagName; });
        var shown = {meaning: meaning.innerHTML, runs: runs.innerHTML};
        var asked = 0;
        var timer = null;
        var last = null;  // the query last shown

        function values() {
            var query = [];
            inputs.forEach(function (input) {
                var value = input.type === 'checkbox' ? (input.checked ? 'on' : '') : input.value;
                query.push(encodeURIComponent(input.name) + '=' + encodeURIComponent(value));
            });
            return query.join('&');
        }
        var initial = values();
        last = initial;

        function busy(on) {
            [meaning, runs].forEach(function (node) {
                if (on) {
                    node.setAttribute('aria-busy', 'true');
                } else {
                    node.removeAttribute('aria-busy');
                }
            });
        }

        function show(answer) {
            runs.textContent = '';
            if (answer.valid) {
                meaning.textContent = answer.meaning;
                if (answer.next_runs.length) {
                    runs.appendChild(list('ol', 'sisy-upcoming', answer.next_runs));
                } else {
                    runs.appendChild(element('p', '', answer.no_runs));
                }
                if (answer.notes.length) {
                    runs.appendChild(list('ul', 'sisy-dst-notes', answer.notes));
                }
            } else if (answer.meaning === undefined) {  // the schedule is at fault
                meaning.textContent = 'invalid: ' + answer.error;
                runs.appendChild(element('p', '', NO_VALID_SCHEDULE));
            } else {  // another field is, or the runs cannot be worked out
                meaning.textContent = answer.meaning;
                runs.appendChild(element('p', '', answer.field
                    ? 'Cannot show the runs: ' + labelOf(form, answer.field) + ': ' + answer.error
                    : answer.error));
            }
        }

        function unavailable(why) {
            last = null;  // so the same values are asked again
            runs.textContent = '';
            runs.appendChild(element('p', 'sisy-preview-unavailable',
                                     'Preview not available (' + why + ').'));
        }

        function ask() {
            timer = null;
            var query = values();
            if (query === last) { busy(false); return; }
            last = query;
            var mine = ++asked;
            if (query === initial) {  // as rendered: the page's own preview is exact
                meaning.innerHTML = shown.meaning;
                runs.innerHTML = shown.runs;
                busy(false);
                return;
            }
            var request = new XMLHttpRequest();
            request.open('GET', url + (url.indexOf('?') < 0 ? '?' : '&') + query);
            request.setRequestHeader('Accept', 'application/json');
            request.onload = function () {
                if (mine !== asked) { return; }  // a later question is on its way
                busy(false);
                var answer = null;
                try { answer = JSON.parse(request.responseText); } catch (e) { answer = null; }
                if (request.status !== 200) {
                    unavailable('HTTP ' + request.status);
                } else if (!answer) {  // the login page, after a redirect
                    unavailable('are you still logged in?');
                } else {
                    show(answer);
                }
            };
            request.onerror = function () {
                if (mine !== asked) { return; }
                busy(false);
                unavailable('no answer from the server');
            };
            request.send();
        }

        function edited() {
            busy(true);
            if (timer !== null) { clearTimeout(timer); }
            timer = setTimeout(ask, DELAY_MS);
        }

        inputs.forEach(function (input) {
            input.addEventListener('input', edited);
            input.addEventListener('change', edited);
        });
        // The admin's calendar and clock pop-ups set a value without an input event.
        document.addEventListener('click', function (event) {
            if (event.target.closest &&
                    event.target.closest('.datetimeshortcuts, .calendarbox, .clockbox')) {
                setTimeout(edited, 0);
            }
        });
    }

    if (document.readyState === 'loading') {
        document.addEventListener('DOMContentLoaded', start);
    } else {
        start();
    }
}());
