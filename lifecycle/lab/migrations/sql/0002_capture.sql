-- The frozen SQL of migration lab 0002_capture: the lab's task table is watched by the
-- generic capture trigger, like any table `lifecycle capture install` watches. Never edit it.

-- install --
CREATE TRIGGER lifecycle_capture AFTER INSERT OR UPDATE OR DELETE ON lab_task
FOR EACH ROW EXECUTE FUNCTION lifecycle_capture('id', 'status');

-- remove --
DROP TRIGGER IF EXISTS lifecycle_capture ON lab_task;
