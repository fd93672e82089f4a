"""Rules saved before the admin and the API took percentages: a rate, share or label
quality threshold above 1 (100 %) cannot be meant as a fraction (such a rule could never
fire when above, and always when below), so it was typed in percent: store its fraction.
The same for a hysteresis above 1 on those metrics. Relative changes are left alone (+150 %
is 1.5, a legitimate value above 1)."""

from django.db import migrations

# As the metrics were when this migration was written (not imported: code moves on).
PROPORTION_METRICS = (
    "fallback-rate",
    "retry-rate",
    "cache-hit-rate",
    "error-rate",
    "route-share",
    "eval-fail-rate",
    "label-recall",
    "label-precision",
    "label-f1",
)


def thresholds_typed_as_percent(apps, schema_editor):
    AlertRule = apps.get_model("alerts", "AlertRule")
    absolute = AlertRule.objects.filter(metric__in=PROPORTION_METRICS, compare_to="")
    for rule in absolute.filter(threshold__gt=1) | absolute.filter(hysteresis__gt=1):
        changed = []
        if 1 < rule.threshold <= 100:
            rule.threshold /= 100
            changed.append("threshold")
        if 1 < rule.hysteresis <= 100:
            rule.hysteresis /= 100
            changed.append("hysteresis")
        if changed:
            rule.save(update_fields=changed)


class Migration(migrations.Migration):
    dependencies = [
        ("alerts", "0003_rule_window_read_exactly"),
    ]

    operations = [
        migrations.RunPython(thresholds_typed_as_percent, migrations.RunPython.noop),
    ]
