// The manage page's live preview: as the person edits, ask the server what today's digest
// would have had with the form's values (nothing is saved). Without script, the page's
// "Preview without saving" button does the same.
(function () {
  var form = document.querySelector("form[data-preview]");
  var target = document.getElementById("preview");
  if (!form || !target || !window.fetch) return;
  var timer = null, asked = 0;
  function update() {
    var params = new URLSearchParams(new FormData(form));
    params.delete("csrf");
    var mine = ++asked;
    fetch(location.pathname.replace(/\/$/, "") + "/preview?" + params.toString(), {credentials: "same-origin"})
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) { if (html !== null && mine === asked) target.innerHTML = html; })
      .catch(function () {});
  }
  form.addEventListener("input", function () { clearTimeout(timer); timer = setTimeout(update, 400); });
  form.addEventListener("change", function () { clearTimeout(timer); timer = setTimeout(update, 150); });
})();
