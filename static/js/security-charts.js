/* Draws the security reports' charts (templates/audit/security/reports.html).
 *
 * The figures come from a json_script element (no inline script: the CSP allows scripts from this
 * origin only). Every chart also has a table on the page, so nothing here is the only way to read it.
 */
(function () {
  "use strict";
  var source = document.getElementById("security-chart-data");
  if (!source || typeof window.Chart === "undefined") {
    return;
  }
  var data = JSON.parse(source.textContent);
  var palette = ["#1f6feb", "#d1242f", "#9a6700", "#1a7f37", "#8250df", "#57606a"];

  document.querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
    var chart = data[canvas.getAttribute("data-chart")];
    if (!chart) {
      return;
    }
    var datasets = chart.datasets
      .filter(function (set) { return !set.hidden; })
      .map(function (set, index) {
        var colour = palette[index % palette.length];
        return {
          label: set.label,
          data: set.data,
          backgroundColor: colour,
          borderColor: colour,
          fill: false,
          tension: 0.2,
          pointRadius: 2
        };
      });
    // Many bars read better lying down; the value axis is then the horizontal one.
    var horizontal = chart.kind === "bar" && chart.labels.length > 8;
    var valueAxis = { beginAtZero: true, max: chart.yMax || undefined, ticks: { precision: 0 } };
    new window.Chart(canvas, {
      type: chart.kind === "line" ? "line" : "bar",
      data: { labels: chart.labels, datasets: datasets },
      options: {
        responsive: true,
        maintainAspectRatio: false,
        animation: false,
        indexAxis: horizontal ? "y" : "x",
        scales: horizontal ? { x: valueAxis } : { y: valueAxis },
        plugins: { legend: { display: datasets.length > 1 } }
      }
    });
    canvas.setAttribute("data-drawn", "true");
  });
})();
