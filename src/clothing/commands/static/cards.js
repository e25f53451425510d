// What both pages share: serve's (index.html) and the in-browser one (web/page/).

// The status line under the drop zone; an error shows in red.
function say(text, isError) {
  const statusLine = document.getElementById("status");
  statusLine.textContent = text;
  statusLine.className = isError ? "error" : "";
}

// One row of a card: the class, a bar as long as its probability, the probability in %.
function predictionRow(className, probability) {
  const row = document.createElement("div");
  row.className = "prediction";
  const label = document.createElement("span");
  label.className = "class";
  label.textContent = className;
  const bar = document.createElement("div");
  bar.className = "bar";
  bar.style.width = (100 * probability).toFixed(1) + "%";
  const shown = document.createElement("span");
  shown.className = "probability";
  shown.dataset.value = probability;
  shown.textContent = (100 * probability).toFixed(1) + "%";
  row.append(label, bar, shown);
  return row;
}
