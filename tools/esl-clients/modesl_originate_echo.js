// Originates a call to a phone into `echo` with modesl (npm), unchanged, taking JSON
// events: `api originate user/USER &echo()`, then, when the test writes a line to stdin,
// `uuid_kill`s it. Prints the originate's and the kill's replies, then the channel's
// events (`EV <name> <Channel-State> <Channel-Call-State>`, and a DTMF's digit, duration
// and source) once it is destroyed; `GOT DTMF <digit>` as soon as one comes.
//
// Usage: NODE_PATH=... node modesl_originate_echo.js HOST PORT PASSWORD USER
const esl = require('modesl');
const readline = require('readline');

const [host, port, password, user] = process.argv.slice(2);
const seen = [];
let uuid = null;
const conn = new esl.Connection(host, Number(port), password, () => {
  conn.events('json', 'ALL', () => {
    conn.api(`originate user/${user} &echo()`, (res) => {
      const text = res.getBody().trim();
      console.log('ORIGINATED ' + text);
      uuid = text.startsWith('+OK ') ? text.slice(4) : null;
      readline.createInterface({ input: process.stdin }).once('line', () => {
        conn.api('uuid_kill ' + uuid, (r) => console.log('KILLED ' + r.getBody().trim()));
      });
    });
  });
});
conn.on('esl::event::*::*', (evt) => {
  const name = evt.getHeader('Event-Name') || '';
  if (!name.startsWith('CHANNEL_') && name !== 'DTMF') return;
  seen.push(evt);
  if (name === 'DTMF') console.log('GOT DTMF ' + evt.getHeader('DTMF-Digit'));
  if (name === 'CHANNEL_DESTROY') {
    for (const e of seen) {
      const mine = e.getHeader('Unique-ID') === uuid ? '' : ' OTHER';
      const dtmf = e.getHeader('Event-Name') === 'DTMF'
        ? ` ${e.getHeader('DTMF-Digit')} ${e.getHeader('DTMF-Duration') > 0} ${e.getHeader('DTMF-Source')}`
        : '';
      console.log(`EV ${e.getHeader('Event-Name')} ${e.getHeader('Channel-State')} ${e.getHeader('Channel-Call-State')}${dtmf}${mine}`);
    }
    conn.disconnect();
    process.exit(0);
  }
});
conn.on('error', (e) => {
  console.log('ERROR ' + e);
  process.exit(1);
});
setTimeout(() => {
  console.log('TIMEOUT');
  process.exit(1);
}, 60000);
