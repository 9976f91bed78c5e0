// Progressive enhancement only: every page works without it.
// Filter selects submit their form when changed.
document.addEventListener("change", function (event) {
  var target = event.target;
  if (target.tagName === "SELECT" && target.form && target.form.method === "get") {
    target.form.submit();
  }
});
