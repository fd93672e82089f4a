"""Feedback given from the trace page: one form per micro-model decision (expected label,
pass / fail, a note), recorded by the service ``POST /api/v1/feedback/`` calls, with the
same validation and the same scope (the viewer's projects; another project's trace is not
found). A session POST with Django's CSRF check; answers with a redirect back to the
trace, where the Expected column shows the label with its source."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponseRedirect
from django.urls import reverse
from django.views.decorators.http import require_POST

from evaluators.services import UnknownTarget, record_feedback

from .access import visible_project_ids
from .api.evaluations import FeedbackInputSerializer

VERDICTS = {"": None, "pass": True, "fail": False}


@require_POST
@login_required(login_url=settings.LOGIN_URL)
def post_trace_feedback(request: HttpRequest, trace_id: str) -> HttpResponseRedirect:
    form = request.POST
    back = f"{reverse('dashboard:trace-detail', args=[trace_id])}#decisions"
    verdict = form.get("verdict", "")
    if verdict not in VERDICTS:
        messages.error(request, "Feedback not saved: verdict: pass, fail or none.")
        return HttpResponseRedirect(back)
    body: dict[str, object] = {
        "trace_id": trace_id,
        "span_id": form.get("span_id", ""),
        "thumbs_up": VERDICTS[verdict],
        "comment": form.get("note", "").strip(),
    }
    if form.get("expected_label", "").strip():
        body["expected_label"] = form["expected_label"].strip()
    given = FeedbackInputSerializer(data=body)
    if not given.is_valid():
        problems = "; ".join(
            " ".join(str(m) for m in msgs)
            if field == "non_field_errors"
            else f"{field}: {' '.join(str(m) for m in msgs)}"
            for field, msgs in given.errors.items()
        )
        messages.error(request, f"Feedback not saved: {problems}")
        return HttpResponseRedirect(back)
    data = given.validated_data
    try:
        record_feedback(
            visible_project_ids(request.user),
            trace_id=data["trace_id"],
            span_id=data.get("span_id"),
            expected_label=data.get("expected_label"),
            thumbs_up=data.get("thumbs_up"),
            comment=data["comment"],
            author=request.user.get_username(),
        )
    except UnknownTarget as exc:
        raise Http404(str(exc)) from exc
    messages.success(request, "Feedback saved.")
    return HttpResponseRedirect(back)
