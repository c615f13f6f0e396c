import { LabIcon } from '@jupyterlab/ui-components';

/** A numbered step, for the cell toolbar button. */
export const stepIcon = new LabIcon({
  name: 'nbplane:step',
  svgstr:
    '<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 16 16">' +
    '<path class="jp-icon3" fill="#616161" d="M2 2h12v3H2zM2 6.5h9v3H2zM2 11h6v3H2z"/></svg>'
});

/** nbplane: a plane of three cells, for the side panel's tab. */
export const nbplaneIcon = new LabIcon({
  name: 'nbplane:logo',
  svgstr:
    '<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 16 16">' +
    '<path class="jp-icon3" fill="#616161" d="M1 3l7-2 7 2v10l-7 2-7-2zm2 1.5v7l4 1.2v-7zm6 1.2v7l4-1.2v-7z"/></svg>'
});
