"""The trace page in a real headless browser: an LLM span's chat, its raw attributes a
click away, and feedback given on the page shown at once, with no script run from the
span's text and no Content-Security-Policy violation."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from tests.browser import launch_chromium_or_skip, watch_csp_violations
from tests.builders import micro_model_trace
from tracestore.services import create_project, store_spans

PASSWORD = "browser-test-pw-1"


@pytest.fixture
def chat_trace(transactional_db) -> str:
    project = create_project("browser")
    user = get_user_model().objects.create_user("bea", password=PASSWORD)
    user.projects.add(project.id)
    trace = micro_model_trace(label="billing")
    trace.span(
        "ChatCompletion",
        parent=trace.spans[0].span_id,
        offset_ms=100,
        attrs={
            "openinference.span.kind": "LLM",
            "llm.model_name": "gpt-4o-mini",
            "llm.input_messages.0.message.role": "user",
            "llm.input_messages.0.message.content": "<img src=x onerror=alert(1)>refund?",
            "llm.output_messages.0.message.role": "assistant",
            "llm.output_messages.0.message.content": "Refunds take 3 days.",
        },
    )
    store_spans(project.id, trace.records())
    return trace.trace_hex


def test_chat_raw_attributes_and_feedback_in_a_real_browser(live_server, chat_trace) -> None:
    with launch_chromium_or_skip() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        errors: list[str] = []
        dialogs: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
        violations = watch_csp_violations(page)
        page.goto(live_server.url + "/login/")
        page.fill("input[name=username]", "bea")
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_load_state("networkidle")

        page.goto(f"{live_server.url}/traces/{chat_trace}/")

        chat = page.locator(".chat").first
        assert chat.locator(".chat-role").all_inner_texts() == ["USER", "ASSISTANT"]
        assert chat.locator(".chat-content").all_inner_texts() == [
            "<img src=x onerror=alert(1)>refund?",
            "Refunds take 3 days.",
        ]
        raw = page.locator("details.raw-attributes").first
        cell = raw.locator("th", has_text="llm.output_messages.0.message.content")
        assert not cell.is_visible()
        raw.locator("summary").click()
        assert cell.is_visible()

        form = page.locator("form.feedback-form").first
        form.locator("input[name=expected_label]").fill("refund")
        form.locator("input[name=verdict][value=fail]").check()
        form.locator("input[name=note]").fill("asked for a refund")
        form.locator("button[type=submit]").click()
        page.wait_for_load_state("networkidle")

        assert page.url.endswith(f"/traces/{chat_trace}/#decisions")
        assert page.locator("table.decisions td.expected").inner_text() == "refund (feedback)"
        assert page.locator(".message-success").inner_text() == "Feedback saved."
        assert (errors, dialogs, violations) == ([], [], [])
