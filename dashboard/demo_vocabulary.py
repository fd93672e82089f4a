"""The demo traffic's vocabulary: micro models and their labels (a decision's route is named
after its label), the models around them, cohort values and the support questions asked.

Shared by the two demo generators, so the live demo and the seeded data set name the same
things and the demo prices cover both: ``microlens demo`` (``microlens/demo.py``, traces
sent through the OpenTelemetry SDK) and ``manage.py seed_demo_data`` (``demo_data.py``,
rows stored in bulk). How often each value occurs, and how each generator errs, stays with
the generator. Plain data, no Django: the ``microlens demo`` command reads it without
settings.
"""

from __future__ import annotations

from dataclasses import dataclass

SERVICE_NAME = "support-bot"
RESOURCE = {"service.name": SERVICE_NAME, "deployment.environment": "demo"}


@dataclass(frozen=True, slots=True)
class DemoMicroModel:
    version: str  # the model behind the micro model (``llm.model_name``)
    labels: tuple[str, ...]  # what it decides; the route of a decision is its label


MICRO_MODELS = {
    "intent-mini": DemoMicroModel(
        "intent-mini-v2", ("billing", "tech", "sales", "account", "other")
    ),
    "safety-screen": DemoMicroModel("safety-screen-v5", ("allow", "review", "block")),
    "router-tiny": DemoMicroModel("router-tiny-v1", ("faq", "agent", "search", "handoff")),
    "reranker-small": DemoMicroModel("reranker-small-v3", ("top1", "top3", "none")),
    "lang-detect": DemoMicroModel("lang-detect-v7", ("en", "de", "fr", "es", "ja")),
}
# Shadow candidates: live micro model -> (candidate name, its model version).
SHADOW_CANDIDATES = {
    "intent-mini": ("intent-mini-next", "intent-mini-v3"),
    "router-tiny": ("router-tiny-next", "router-tiny-v2"),
}
ANSWER_MODEL = "gpt-mini"  # the cheap model that writes the answer
BIG_MODELS = ("gpt-large", "claude-big")  # the large models a fallback escalates to
EMBEDDING_MODEL = "text-embed-small"

# Cohort values, each with its share of the traffic.
TIERS = (("free", 0.55), ("pro", 0.3), ("enterprise", 0.15))
LANGUAGES = (("en", 0.5), ("de", 0.15), ("fr", 0.12), ("es", 0.13), ("ja", 0.1))
PROMPT_VERSIONS = (("v3", 0.45), ("v4", 0.35), ("v5", 0.2))
TASK_TYPES = (("support", 0.6), ("sales", 0.25), ("search", 0.15))

# What users ask, by the intent (intent-mini's label) it really has, and what the knowledge
# base answers it with.
QUESTIONS = {
    "billing": (
        "Why was I charged twice this month?",
        "Can I get an invoice with our VAT number on it?",
        "My card was declined but the payment went through.",
    ),
    "tech": (
        "The export to CSV times out for large projects.",
        "SSO login loops back to the sign-in page.",
        "The mobile app crashes when I open a shared folder.",
    ),
    "sales": (
        "Is there a discount if we pay for a whole year?",
        "Can we get a quote for 200 seats?",
    ),
    "account": (
        "How do I add a second admin to our workspace?",
        "I need to change the email address on my account.",
        "How do I close my account and delete my data?",
    ),
    "other": (
        "Do you have an office in Lisbon?",
        "What is your roadmap for offline mode?",
    ),
}
DOCUMENTS = {
    "billing": (
        "Duplicate charges are pending authorisations and drop off within 5 business days.",
        "Invoices can carry a VAT number: Settings > Billing > Tax details.",
    ),
    "tech": (
        "CSV exports above 100k rows run in the background and are emailed as a link.",
        "SSO loops are caused by a clock skew above 5 minutes on the identity provider.",
        "Crash on shared folders is fixed in app version 4.12.",
    ),
    "sales": (
        "Annual plans are billed once a year at a 15 % discount.",
        "Quotes for more than 100 seats come from the sales team within one business day.",
    ),
    "account": (
        "Workspace owners can grant the admin role under Members.",
        "Email changes need confirmation from both the old and the new address.",
        "Account deletion removes all data after a 30-day grace period.",
    ),
    "other": ("Our offices are in Berlin and Toronto.", "Offline mode is planned for Q3."),
}
