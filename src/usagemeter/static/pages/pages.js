// The pages' script: charts from the numbers each page prints, and small conveniences.
// Without it every page still reads: tables beside the charts, forms with buttons.
"use strict";
(function () {
  const css = getComputedStyle(document.documentElement);
  const color = (name) => css.getPropertyValue(name).trim();
  const palette = ["--k1", "--k2", "--k3", "--k4"].map(color)
    .concat(["#ef4444", "#14b8a6", "#eab308", "#64748b", "#ec4899", "#84cc16"]);
  const money = new Intl.NumberFormat(undefined, { style: "currency", currency: "USD", maximumFractionDigits: 4 });
  const compact = new Intl.NumberFormat(undefined, { notation: "compact", maximumFractionDigits: 2 });
  const whole = new Intl.NumberFormat();
  const formats = { usd: (v) => money.format(v), tokens: (v) => compact.format(v), count: (v) => whole.format(v) };

  function config(spec) {
    const show = formats[spec.unit] || String;
    Chart.defaults.color = color("--muted");
    Chart.defaults.borderColor = color("--line");
    return {
      type: "bar",
      data: {
        labels: spec.labels,
        datasets: spec.series.map((s, i) => ({ label: s.label, data: s.data, backgroundColor: palette[i % palette.length] })),
      },
      options: {
        responsive: true, maintainAspectRatio: false, animation: false,
        interaction: { mode: "index", intersect: false },
        scales: { x: { stacked: spec.stacked }, y: { stacked: spec.stacked, ticks: { callback: show } } },
        plugins: {
          legend: { display: spec.series.length > 1 },
          tooltip: { callbacks: { label: (c) => `${c.dataset.label}: ${show(c.raw)}` } },
        },
      },
    };
  }

  function draw(figure, spec) {
    const box = figure.querySelector(".canvas");
    box.hidden = false;
    if (figure.chart) figure.chart.destroy();
    figure.chart = new Chart(box.querySelector("canvas"), config(spec));
  }

  for (const el of document.querySelectorAll(".js-only")) el.hidden = false;
  for (const el of document.querySelectorAll(".js-hide")) el.hidden = true;

  for (const figure of document.querySelectorAll("figure.chart")) {
    const spec = JSON.parse(figure.querySelector("script.spec").textContent);
    for (const d of figure.querySelectorAll("details.numbers")) d.open = false;
    if (spec.series) { draw(figure, spec); continue; }
    // A chart with views: {daily|weekly: {tokens|cost: spec}}, switched by the toggles.
    const state = { span: "daily", measure: "tokens" };
    const section = figure.closest("section");
    const redraw = () => draw(figure, spec[state.span][state.measure]);
    for (const b of section.querySelectorAll(".toggles button")) {
      b.addEventListener("click", () => {
        const key = b.dataset.measure ? "measure" : "span";
        state[key] = b.dataset[key];
        for (const other of section.querySelectorAll(`.toggles button[data-${key}]`)) {
          other.setAttribute("aria-pressed", String(other === b));
        }
        redraw();
      });
    }
    redraw();
  }

  for (const form of document.querySelectorAll("form[data-autosubmit]")) {
    form.querySelector("select").addEventListener("change", () => form.submit());
  }

  for (const button of document.querySelectorAll(".curl .copy")) {
    if (!navigator.clipboard) { button.hidden = true; continue; }  // only in a secure context
    button.addEventListener("click", async () => {
      await navigator.clipboard.writeText(button.previousElementSibling.textContent);
      button.textContent = "Copied";
      setTimeout(() => { button.textContent = "Copy"; }, 1500);
    });
  }
})();
