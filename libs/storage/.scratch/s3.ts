import { createRequire } from 'node:module';
import { S3Client, CreateBucketCommand, PutObjectCommand, GetObjectCommand, HeadBucketCommand } from '@aws-sdk/client-s3';
const require = createRequire(import.meta.url);
const S3rver = require('s3rver');
const s = new S3rver({ address: '127.0.0.1', port: 0, silent: true, directory: '/tmp/s3scratch' });
const addr = await s.run();
console.log(addr);
process.env.AWS_ACCESS_KEY_ID='S3RVER'; process.env.AWS_SECRET_ACCESS_KEY='S3RVER';
process.env.AWS_ENDPOINT_URL_S3=`http://127.0.0.1:${addr.port}`;
const c = new S3Client({ region: 'us-east-1', forcePathStyle: true });
console.log(await c.config.endpoint?.());
await c.send(new CreateBucketCommand({ Bucket: 'bucket1' }));
try { await c.send(new CreateBucketCommand({ Bucket: 'bucket1' })); } catch (e: any) { console.log('second create', e.name, e.$metadata?.httpStatusCode); }
try { await c.send(new HeadBucketCommand({ Bucket: 'nob' })); } catch (e: any) { console.log('head missing', e.name, e.$metadata?.httpStatusCode); }
await c.send(new PutObjectCommand({ Bucket: 'bucket1', Key: 'a/b.gz', Body: Buffer.from('hello'), ContentEncoding: 'gzip', ContentType: 'application/x-ndjson' }));
const r = await c.send(new GetObjectCommand({ Bucket: 'bucket1', Key: 'a/b.gz' }));
console.log(r.ContentEncoding, r.ContentType, Buffer.from(await r.Body!.transformToByteArray()).toString());
try { await c.send(new GetObjectCommand({ Bucket: 'bucket1', Key: 'nope' })); } catch (e: any) { console.log('missing', e.name, e.$metadata?.httpStatusCode); }
const bad = new S3Client({ region: 'us-east-1', forcePathStyle: true, credentials: { accessKeyId: 'x', secretAccessKey: 'y' } });
try { await bad.send(new HeadBucketCommand({ Bucket: 'bucket1' })); console.log('bad creds ok'); } catch (e: any) { console.log('bad creds', e.name); }
const np = new S3Client({ region: 'us-east-1' });
try { await np.send(new HeadBucketCommand({ Bucket: 'bucket1' })); console.log('no pathstyle ok'); } catch (e: any) { console.log('no pathstyle', e.name, e.message); }
c.destroy(); bad.destroy(); np.destroy();
await s.close();
console.log('closed');
