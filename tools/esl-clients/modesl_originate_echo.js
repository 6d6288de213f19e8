// Originates a call to a phone into `echo` with modesl (npm), unchanged, taking JSON
// events through a filter on the channel's uuid (chosen here: origination_uuid):
// `api originate {origination_uuid=...}user/USER &echo()`, then, when the test writes a
// line to stdin, `uuid_kill`s it. Prints the filter's reply, the originate's and the
// kill's replies, `GOT DTMF <digit>` as soon as one comes, and once the channel is
// destroyed its events (`EV <name> <Channel-State> <Channel-Call-State>`, and a DTMF's
// digit, duration and source) and how many other events got through the filter.
//
// Usage: NODE_PATH=... node modesl_originate_echo.js HOST PORT PASSWORD USER
const esl = require('modesl');
const readline = require('readline');
const crypto = require('crypto');

const [host, port, password, user] = process.argv.slice(2);
const uuid = crypto.randomUUID();
const seen = [];
let others = 0;
const conn = new esl.Connection(host, Number(port), password, () => {
  conn.filter('Unique-ID', uuid, (f) => {
    console.log('FILTER ' + f.getHeader('Reply-Text').replace(uuid, '<uuid>'));
    conn.events('json', 'ALL', () => {
      conn.api(`originate {origination_uuid=${uuid}}user/${user} &echo()`, (res) => {
        const text = res.getBody().trim();
        console.log('ORIGINATED ' + (text === '+OK ' + uuid ? '+OK <origination_uuid>' : text));
        readline.createInterface({ input: process.stdin }).once('line', () => {
          conn.api('uuid_kill ' + uuid, (r) => console.log('KILLED ' + r.getBody().trim()));
        });
      });
    });
  });
});
conn.on('esl::event::*::*', (evt) => {
  const name = evt.getHeader('Event-Name');
  if (!name) return; // a command's reply, not an event
  if (evt.getHeader('Unique-ID') !== uuid) {
    others += 1;
    console.log('OTHER ' + name);
    return;
  }
  seen.push(evt);
  if (name === 'DTMF') console.log('GOT DTMF ' + evt.getHeader('DTMF-Digit'));
  if (name === 'CHANNEL_DESTROY') {
    for (const e of seen) {
      const dtmf = e.getHeader('Event-Name') === 'DTMF'
        ? ` ${e.getHeader('DTMF-Digit')} ${e.getHeader('DTMF-Duration') > 0} ${e.getHeader('DTMF-Source')}`
        : '';
      console.log(`EV ${e.getHeader('Event-Name')} ${e.getHeader('Channel-State')} ${e.getHeader('Channel-Call-State')}${dtmf}`);
    }
    console.log('OTHERS ' + others);
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
