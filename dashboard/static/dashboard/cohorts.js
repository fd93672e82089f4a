// Cohorts page: draws the eval-fail-rate heatmap and the fallback chart from the figures
// the server built; clicking a heatmap cell opens that evaluator's failing traces in that
// cohort.
(function () {
  "use strict";
  if (typeof Plotly === "undefined") {
    return;
  }
  document.querySelectorAll("[data-figure]").forEach(function (holder) {
    var source = document.getElementById(holder.dataset.figure);
    if (!source) {
      return;
    }
    var figure = JSON.parse(source.textContent);
    Plotly.newPlot(holder, figure.data, figure.layout, {
      displaylogo: false,
      responsive: true,
    }).then(function () {
      holder.dataset.drawn = "true";
    });
    if (holder.dataset.tracesUrl) {
      holder.on("plotly_click", function (event) {
        var point = event.points && event.points[0];
        if (!point || !point.customdata) {
          return;
        }
        var params = new URLSearchParams();
        params.set("failed", point.customdata[0]);
        params.set("cohort." + holder.dataset.dimension, point.customdata[1]);
        params.set("range", holder.dataset.range);
        window.location.href = holder.dataset.tracesUrl + "?" + params.toString();
      });
    }
  });
})();
