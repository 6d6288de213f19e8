// Drives ferroswitch's event socket with modesl (npm), unchanged, as a Node.js
// application would: connects and authenticates, runs api and bgapi, subscribes to JSON
// channel events and waits for a call's. Prints one line per result for the test to
// check, and READY once it listens.
//
// Usage: NODE_PATH=... node modesl_client.js HOST PORT PASSWORD
const esl = require('modesl');

const [host, port, password] = process.argv.slice(2);
const seen = [];
const conn = new esl.Connection(host, Number(port), password, () => {
  console.log('CONNECTED');
  conn.api('status', (res) => {
    console.log('STATUS ' + res.getBody().split('\n')[0].split(',')[0]);
    conn.api('show channels as json', (res2) => {
      console.log('CHANNELS ' + JSON.stringify(res2.getBody()));
      conn.bgapi('uptime', (job) => {
        console.log('JOB ' + (job.getHeader('Job-Command') || '') + ' ' + /^\d+$/.test(job.getBody()));
        conn.events('json', 'CHANNEL_CREATE CHANNEL_ANSWER CHANNEL_HANGUP_COMPLETE', () => {
          console.log('READY');
        });
      });
    });
  });
});
for (const name of ['CHANNEL_CREATE', 'CHANNEL_ANSWER', 'CHANNEL_HANGUP_COMPLETE']) {
  conn.on('esl::event::' + name + '::*', (evt) => {
    seen.push(`CALL ${name} ${evt.getHeader('Call-Direction')} ${evt.getHeader('Caller-Destination-Number')}`);
    if (seen.filter((s) => s.startsWith('CALL CHANNEL_HANGUP_COMPLETE')).length === 2) {
      for (const s of seen) console.log(s);
      conn.disconnect();
      process.exit(0);
    }
  });
}
conn.on('error', (e) => {
  console.log('ERROR ' + e);
  process.exit(1);
});
setTimeout(() => {
  for (const s of seen) console.log(s);
  console.log('TIMEOUT');
  process.exit(1);
}, 60000);
