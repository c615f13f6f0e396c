// Swagger UI's files, copied from the pinned swagger-ui-dist into the Python package, where the
// nbplane server serves them for /docs: the API page then works without internet (no CDN).
const fs = require('fs');
const path = require('path');

const source = path.dirname(require.resolve('swagger-ui-dist/package.json'));
const target = path.join(__dirname, '..', 'src', 'nbplane', 'server', 'swagger-ui');
fs.mkdirSync(target, { recursive: true });
for (const name of ['swagger-ui-bundle.js', 'swagger-ui.css', 'favicon-32x32.png', 'LICENSE']) {
  fs.copyFileSync(path.join(source, name), path.join(target, name));
}
