// Cohorts page: draws the eval-fail-rate heatmap and the fallback chart from the figures
// the server built; clicking a heatmap cell opens that evaluator's failing traces in that
// cohort.
(function () {
  "use strict";
  microlensFigures.draw().forEach(function (holder) {
    if (holder.dataset.tracesUrl) {
      holder.on("plotly_click", function (event) {
        var point = event.points && event.points[0];
        if (!point || !point.customdata) {
          return;
        }
        var params = new URLSearchParams();
        params.set("failed_evaluator", point.customdata[0]);
        params.set("cohort." + holder.dataset.dimension, point.customdata[1]);
        params.set("range", holder.dataset.range);
        window.location.href = holder.dataset.tracesUrl + "?" + params.toString();
      });
    }
  });
})();
