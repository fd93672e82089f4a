// Cohorts page: draws the eval-fail-rate heatmap and the fallback chart from the figures
// the server built; clicking a heatmap cell opens that evaluator's failing traces in that
// cohort, window and micro model (the Traces page's failed_evaluator and cohort filters).
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
        // The cell's window and micro model, as the page counted them.
        if (holder.dataset.range) {
          params.set("range", holder.dataset.range);
        } else {
          params.set("range", "custom");
          params.set("start", holder.dataset.start);
          params.set("end", holder.dataset.end);
        }
        if (holder.dataset.microModel) {
          params.set("micro_model", holder.dataset.microModel);
        }
        if (holder.dataset.project) {
          params.set("project", holder.dataset.project);
        }
        window.location.href = holder.dataset.tracesUrl + "?" + params.toString();
      });
    }
  });
})();
