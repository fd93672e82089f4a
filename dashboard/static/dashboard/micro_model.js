// Draws every chart on the page from the figures the server built (dashboard/charts.py,
// embedded with json_script under the id named by each holder's data-figure).
(function () {
  "use strict";
  if (typeof Plotly === "undefined") {
    return;
  }
  document.querySelectorAll("[data-figure]").forEach(function (holder) {
    var source = document.getElementById(holder.dataset.figure);
    if (!source) {
      holder.closest(".card").hidden = true;
      return;
    }
    var figure = JSON.parse(source.textContent);
    Plotly.newPlot(holder, figure.data, figure.layout, {
      displaylogo: false,
      responsive: true,
    }).then(function () {
      holder.dataset.drawn = "true";
    });
  });
})();
