// Traces page: the filter form puts only the filters that are set in the address (so a
// shared link reads as what it filters), and a preset range drops the custom start/end.
(function () {
  "use strict";
  var form = document.getElementById("trace-filters");
  if (!form) {
    return;
  }
  form.addEventListener("submit", function () {
    var range = form.elements.namedItem("range").value;
    Array.prototype.forEach.call(form.elements, function (field) {
      if (!field.name) {
        return;
      }
      var custom = field.name === "start" || field.name === "end";
      if (field.value === "" || (custom && range !== "custom")) {
        field.disabled = true;
      }
    });
  });
  // Leaving the page by the back button keeps the disabled fields disabled in some
  // browsers' page cache: enable them again when the page is shown.
  window.addEventListener("pageshow", function () {
    Array.prototype.forEach.call(form.elements, function (field) {
      field.disabled = false;
    });
  });
})();
