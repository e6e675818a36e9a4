// The gallery of results: one element however many photos it shows, so that a search costs the page one
// message rather than an image, a caption and a row of actions for each result. Everything it shows from the
// index (names, captions, addresses) is set as text or as an attribute, never parsed as HTML.
export default function (component) {
  const { data, parentElement, setTriggerValue } = component;
  let grid = parentElement.querySelector(".gallery");
  if (!grid) {
    grid = document.createElement("div");
    grid.className = "gallery";
    parentElement.appendChild(grid);
  }
  grid.style.setProperty("--columns", String(data.columns));
  grid.replaceChildren(
    ...JSON.parse(data.tiles).map((tile) => {
      const figure = document.createElement("figure");
      figure.className = "tile";
      if (/^(data:image\/|https?:)/.test(tile.src)) {
        const image = document.createElement("img");
        image.src = tile.src;
        image.alt = tile.caption;
        figure.appendChild(image);
      }
      const caption = document.createElement("figcaption");
      caption.textContent = tile.caption;
      figure.appendChild(caption);
      const actions = document.createElement("div");
      actions.className = "actions";
      for (const { action, label } of tile.actions) {
        const button = document.createElement("button");
        button.type = "button";
        button.textContent = label;
        button.setAttribute("aria-label", `${label}: #${tile.rank}`);
        button.onclick = () => setTriggerValue("action", { key: tile.key, action });
        actions.appendChild(button);
      }
      figure.appendChild(actions);
      return figure;
    }),
  );
}
