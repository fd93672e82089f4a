// Alerts page: each rule's value over time against its threshold, from the figures the
// server built (dashboard/alerts/charts.py).
microlensFigures.draw();
