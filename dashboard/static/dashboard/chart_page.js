// Overview and Micro model pages: every chart from the figures the server built; cards
// the server left without data are hidden. Clicking a cell of the micro model's confusion
// matrix opens the traces of its decisions (that predicted and expected label), in the
// page's window and filters (data-traces-query, built by the server).
microlensFigures.draw({ hideEmptyCards: true }).forEach(function (holder) {
  "use strict";
  if (!holder.dataset.tracesUrl) {
    return;
  }
  holder.on("plotly_click", function (event) {
    var point = event.points && event.points[0];
    if (!point || !point.customdata) {
      return;
    }
    var params = new URLSearchParams(holder.dataset.tracesQuery);
    params.set("label", point.customdata[0]);
    params.set("expected_label", point.customdata[1]);
    window.location.href = holder.dataset.tracesUrl + "?" + params.toString();
  });
});
