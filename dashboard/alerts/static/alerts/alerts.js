// Draws each rule's value over time against its threshold from the figures the server
// built (dashboard/alerts/charts.py, embedded with json_script).
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
    Plotly.newPlot(holder, figure.data, figure.layout, { displaylogo: false, responsive: true });
  });
})();
