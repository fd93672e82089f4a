// Trace page: draws the span waterfall from the figure the server built
// (dashboard/charts.py, embedded with json_script). Clicking a bar jumps to that span.
(function () {
  "use strict";
  var holder = document.getElementById("waterfall");
  var source = document.getElementById("waterfall-figure");
  if (!holder || !source || typeof Plotly === "undefined") {
    return;
  }
  var figure = JSON.parse(source.textContent);
  Plotly.newPlot(holder, figure.data, microlensTheme.apply(figure.layout), {
    displaylogo: false,
    responsive: true,
    modeBarButtonsToRemove: ["select2d", "lasso2d"],
  }).then(function () {
    holder.dataset.drawn = "true";
  });
  microlensTheme.follow(holder);
  holder.on("plotly_click", function (event) {
    var point = event.points && event.points[0];
    if (point && point.customdata) {
      window.location.hash = "span-" + point.customdata;
    }
  });
})();
