/** Task checks shared by the runtime tests (v1 and v2 alike). */
import assert from 'node:assert/strict';
import type { Connection } from '../../client/connection.js';
import { TasksDefinition } from '../../api/gen/services/tasks/v1/tasks.js';

/**
 * SIGKILLs task `id` and checks what the tasks API reports: Wait and Get say 137 (Get:
 * STOPPED), Delete says 137 with the task's pid `pid`.
 */
export async function killAndDeleteTask(conn: Connection, id: string, pid: string): Promise<void> {
  const tasks = conn.service(TasksDefinition);
  const waited = tasks.wait({ containerId: id });
  await tasks.kill({ containerId: id, signal: 9 });
  assert.equal((await waited).exitStatus, 137);
  const { process: p } = await tasks.get({ containerId: id });
  assert.equal(p!.status, 3);
  assert.equal(p!.exitStatus, 137);
  const del = await tasks.delete({ containerId: id });
  assert.equal(del.exitStatus, 137);
  assert.equal(String(del.pid), pid);
}
