// The page's logic: MediaPipe's ImageClassifier runs the int8 model (model.tflite, its labels and
// normalisation in its metadata) on each photo the user gives, on this device. say and predictionRow:
// static/cards.js.
import { FilesetResolver, ImageClassifier } from "./tasks-vision/vision_bundle.js";

const drop = document.getElementById("drop");
const picker = document.getElementById("picker");
const results = document.getElementById("results");

function card(file) {
  const item = document.createElement("li");
  item.className = "result";
  item.dataset.file = file.name;
  const name = document.createElement("div");
  name.className = "name";
  name.textContent = file.name;
  item.append(name);
  return item;
}

function showPredictions(item, file, categories, milliseconds) {
  const image = document.createElement("img");
  image.src = URL.createObjectURL(file);
  image.alt = file.name;
  item.prepend(image);
  item.dataset.ms = milliseconds.toFixed(2);
  for (const guess of categories) item.append(predictionRow(guess.categoryName, guess.score));
}

function showError(item, text) {
  item.classList.add("failed");
  const message = document.createElement("div");
  message.className = "error";
  message.textContent = text;
  item.append(message);
}

async function classifyAll(classifier, files) {
  const photos = [...files];
  if (!photos.length) return;
  const items = photos.map(card);
  results.prepend(...items); // the newest batch on top, in the order the photos were given
  let failed = 0;
  for (const [i, file] of photos.entries()) {
    say(`Classifying ${i + 1} of ${photos.length}…`, false);
    const started = performance.now();
    let bitmap;
    try {
      bitmap = await createImageBitmap(file); // decodes, EXIF orientation applied
    } catch {
      showError(items[i], "Not an image this browser can read.");
      failed += 1;
      continue;
    }
    try {
      const answer = classifier.classify(bitmap);
      showPredictions(items[i], file, answer.classifications[0].categories, performance.now() - started);
    } catch (error) {
      showError(items[i], `The model could not classify it (${error}).`);
      failed += 1;
    } finally {
      bitmap.close();
    }
  }
  const done = photos.length - failed;
  say(`Done: ${done} photo${done === 1 ? "" : "s"}` + (failed ? `, ${failed} not an image.` : "."), failed > 0);
}

async function start() {
  if (typeof WebAssembly !== "object") {
    say("This browser cannot run WebAssembly, which the model needs: try a current Chrome, Firefox or Safari.", true);
    return;
  }
  let classifier;
  try {
    const vision = await FilesetResolver.forVisionTasks("./tasks-vision/wasm");
    classifier = await ImageClassifier.createFromOptions(vision, {
      baseOptions: { modelAssetPath: "./model.tflite" },
      runningMode: "IMAGE",
      maxResults: 3,
    });
  } catch (error) {
    say(`The model did not load (${error}).`, true);
    return;
  }
  picker.disabled = false;
  drop.classList.remove("disabled");
  say("Ready.", false);
  return classifier;
}

// Drops are caught from the start, so a photo dropped while the model loads (or after it failed)
// is not opened by the browser in place of the page; it is classified once the model is ready.
const ready = start();
picker.addEventListener("change", async () => {
  const files = [...picker.files];
  picker.value = "";
  const classifier = await ready;
  if (classifier) classifyAll(classifier, files);
});
drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", async (event) => {
  event.preventDefault();
  drop.classList.remove("over");
  const files = [...event.dataTransfer.files];
  const classifier = await ready;
  if (classifier) classifyAll(classifier, files);
});
