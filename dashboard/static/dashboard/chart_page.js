// Overview and Micro model pages: every chart from the figures the server built; cards
// the server left without data are hidden. A click on a point of a chart whose holder has
// data-traces-url opens the Traces page at data-traces-query (the page's window and
// filters, and the chart's own, built by the server) with the parameters data-click-params
// names set to the point's customdata, in order: a confusion-matrix cell's predicted and
// expected label, a fallback-by-cohort bar's cohort value, a route share bar's micro
// model, route and time bucket (range=custom and the bucket's start and end).
microlensFigures.draw({ hideEmptyCards: true }).forEach(function (holder) {
  "use strict";
  if (!holder.dataset.tracesUrl) {
    return;
  }
  var names = holder.dataset.clickParams.split(" ");
  holder.on("plotly_click", function (event) {
    var point = event.points && event.points[0];
    if (!point || !point.customdata) {
      return;
    }
    var params = new URLSearchParams(holder.dataset.tracesQuery);
    for (var i = 0; i < names.length; i++) {
      // A point without a value (no label, no cohort value) has no filter to open.
      if (point.customdata[i] === null || point.customdata[i] === "") {
        return;
      }
      params.set(names[i], point.customdata[i]);
    }
    window.location.href = holder.dataset.tracesUrl + "?" + params.toString();
  });
});
