// Pre-selects the browser's time zone on a fresh form (the page works without this).
(function () {
  var zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  document.querySelectorAll("select[data-browser]").forEach(function (select) {
    if (!zone || document.querySelector("[aria-invalid]")) return;
    for (var i = 0; i < select.options.length; i++) {
      if (select.options[i].value === zone) { select.value = zone; return; }
    }
  });
})();
