// Traces page: the filter form puts only the filters that are set in the address (so a
// shared link reads as what it filters), and a preset range drops the custom start/end.
// The custom start/end fields show only while "from – to:" is chosen; the server fills
// them with the current window, so choosing it starts from what the page shows.
(function () {
  "use strict";
  var form = document.getElementById("trace-filters");
  if (!form) {
    return;
  }
  var range = form.elements.namedItem("range");
  var custom = document.getElementById("t-custom");
  function showCustom() {
    if (custom) {
      custom.hidden = range.value !== "custom";
    }
  }
  range.addEventListener("change", showCustom);
  form.addEventListener("submit", function () {
    Array.prototype.forEach.call(form.elements, function (field) {
      if (!field.name) {
        return;
      }
      var isCustom = field.name === "start" || field.name === "end";
      if (field.value === "" || (isCustom && range.value !== "custom")) {
        field.disabled = true;
      }
    });
  });
  // Leaving the page by the back button keeps the disabled fields disabled in some
  // browsers' page cache, and may restore another range than the page was drawn for:
  // enable them again, and show the custom fields for the range shown.
  window.addEventListener("pageshow", function () {
    Array.prototype.forEach.call(form.elements, function (field) {
      field.disabled = false;
    });
    showCustom();
  });
})();
