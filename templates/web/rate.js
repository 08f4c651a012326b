// The rating page: a rating link followed from an e-mail records its rating without a second
// click (once per page in a tab: not again on coming back to it). The page works without
// this, with its button; mail scanners that only fetch the link record nothing.
(function () {
  var form = document.querySelector("form[data-autosubmit]");
  if (!form) return;
  var key = "rated:" + location.pathname;
  try {
    if (sessionStorage.getItem(key)) return;
    sessionStorage.setItem(key, "1");
  } catch (e) { /* no storage: submit anyway, a replay records nothing more */ }
  form.submit();
})();
