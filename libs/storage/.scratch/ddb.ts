import { createRequire } from 'node:module';
import { DynamoDBClient, CreateTableCommand, DescribeTableCommand } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient, PutCommand, UpdateCommand, QueryCommand } from '@aws-sdk/lib-dynamodb';
const require = createRequire(import.meta.url);
const dynalite = require('dynalite');
const srv = dynalite({ createTableMs: 0, path: '/tmp/ddbscratch' });
await new Promise<void>((r, j) => srv.listen(0, '127.0.0.1', (e: any) => e ? j(e) : r()));
const port = srv.address().port;
process.env.AWS_ACCESS_KEY_ID='x'; process.env.AWS_SECRET_ACCESS_KEY='y';
process.env.AWS_ENDPOINT_URL_DYNAMODB=`http://127.0.0.1:${port}`;
const c = new DynamoDBClient({ region: 'us-east-1' });
const doc = DynamoDBDocumentClient.from(c);
try {
await c.send(new CreateTableCommand({ TableName: 'table1', BillingMode: 'PAY_PER_REQUEST',
  AttributeDefinitions: [{AttributeName:'pk',AttributeType:'S'},{AttributeName:'g1pk',AttributeType:'S'},{AttributeName:'g1sk',AttributeType:'S'}],
  KeySchema: [{AttributeName:'pk',KeyType:'HASH'}],
  GlobalSecondaryIndexes: [{ IndexName: 'gsi1', KeySchema: [{AttributeName:'g1pk',KeyType:'HASH'},{AttributeName:'g1sk',KeyType:'RANGE'}], Projection: { ProjectionType: 'INCLUDE', NonKeyAttributes: ['status'] } }] }));
} catch (e: any) { console.log('create', e.name, e.message); }
const d = await c.send(new DescribeTableCommand({ TableName: 'table1' }));
console.log(d.Table?.TableStatus, d.Table?.GlobalSecondaryIndexes?.map(g => [g.IndexName, g.IndexStatus]));
for (let i = 0; i < 3; i++) {
  try { await doc.send(new PutCommand({ TableName: 'table1', Item: { pk: 'a'+i, g1pk: 'T', g1sk: 's'+i, status: 'x', big: 'zz' }, ConditionExpression: 'attribute_not_exists(pk)' })); } catch (e: any) { console.log('put', e.name); }
}
try { await doc.send(new UpdateCommand({ TableName: 'table1', Key: { pk: 'nope' }, UpdateExpression: 'SET #s = :s', ConditionExpression: 'attribute_exists(pk)', ExpressionAttributeNames: {'#s':'status'}, ExpressionAttributeValues: {':s':'y'}, ReturnValuesOnConditionCheckFailure: 'ALL_OLD' })); } catch (e: any) { console.log('upd', e.name, e.Item); }
try { await doc.send(new UpdateCommand({ TableName: 'table1', Key: { pk: 'a1' }, UpdateExpression: 'SET #s = :s', ConditionExpression: 'attribute_not_exists(pk)', ExpressionAttributeNames: {'#s':'status'}, ExpressionAttributeValues: {':s':'y'}, ReturnValuesOnConditionCheckFailure: 'ALL_OLD' })); } catch (e: any) { console.log('upd2', e.name, e.Item); }
const q = await doc.send(new QueryCommand({ TableName: 'table1', IndexName: 'gsi1', KeyConditionExpression: 'g1pk = :p', ExpressionAttributeValues: { ':p': 'T' }, ScanIndexForward: false, Limit: 2 }));
console.log(q.Items, q.LastEvaluatedKey);
const q2 = await doc.send(new QueryCommand({ TableName: 'table1', IndexName: 'gsi1', KeyConditionExpression: 'g1pk = :p', ExpressionAttributeValues: { ':p': 'T' }, ScanIndexForward: false, Limit: 2, ExclusiveStartKey: q.LastEvaluatedKey }));
console.log(q2.Items, q2.LastEvaluatedKey);
c.destroy();
await new Promise<void>((r) => srv.close(() => r()));
console.log('closed');
